"""Table tests of the CSI VolumeSnapshotter's pure parts: class choice (KubeVirt
getVolumeSnapshotClassName), the VolumeSnapshot body, status mapping, API error mapping; and
virt-snapshot's --volume-snapshotter switch."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from kubernetes.client.exceptions import ApiException

from services.virt_snapshot.csi_snapshotter import (
    DEFAULT_CLASS_ANNOTATION,
    CsiSnapshotter,
    NoSnapshotClass,
    choose_volume_snapshot_class,
    copy_status,
    to_snapshotter_error,
    volume_snapshot_body,
)
from services.virt_snapshot.main import main, volume_snapshotter
from services.virt_snapshot.volume_snapshotter import CopyStatus, SnapshotRequest, VolumeRequest


def vsc(name, driver, default=False):
    meta = {"name": name}
    if default:
        meta["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true"}
    return {"metadata": meta, "driver": driver, "deletionPolicy": "Delete"}


HOSTPATH = "hostpath.csi.k8s.io"
CLASSES = [vsc("other", "ebs.csi.aws.com"), vsc("hp-a", HOSTPATH), vsc("hp-b", HOSTPATH, default=True)]


@pytest.mark.parametrize("provisioner,profile,classes,expected", [
    (HOSTPATH, None, [vsc("only", HOSTPATH), vsc("x", "other.csi")], "only"),        # the one driver match
    (HOSTPATH, None, CLASSES, "hp-b"),                                              # several: the default one
    (HOSTPATH, "hp-a", CLASSES, "hp-a"),                                            # StorageProfile wins
    (HOSTPATH, "", [vsc("only", HOSTPATH)], "only"),                                # empty profile class: ignored
])
def test_class_choice(provisioner, profile, classes, expected):
    assert choose_volume_snapshot_class("sc", provisioner, profile, classes, "data") == expected


NOT_CONFIGURED = "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [sc] [data]"


@pytest.mark.parametrize("provisioner,profile,classes,message", [
    (HOSTPATH, None, [vsc("x", "other.csi")], NOT_CONFIGURED),                      # no driver match
    (HOSTPATH, None, [], NOT_CONFIGURED),                                           # no classes at all
    (None, None, CLASSES, NOT_CONFIGURED),                                          # StorageClass missing
    (HOSTPATH, "gone", CLASSES, NOT_CONFIGURED),                                    # profile names a missing class
    (HOSTPATH, None, [vsc("a", HOSTPATH), vsc("b", HOSTPATH)], "2 matching VolumeSnapshotClasses for sc"),
])
def test_no_class(provisioner, profile, classes, message):
    with pytest.raises(NoSnapshotClass) as err:
        choose_volume_snapshot_class("sc", provisioner, profile, classes, "data")
    assert str(err.value) == message


def test_volume_snapshot_body_names_claim_class_and_source_labels():
    request = SnapshotRequest(namespace="ns1", snapshot_uid="u1", vm_name="vm1",
                              volumes=[VolumeRequest("data", "data-pvc", "vmsnapshot-u1-volume-data")])
    body = volume_snapshot_body(request, request.volumes[0], "hp-b")
    assert body == {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "vmsnapshot-u1-volume-data", "namespace": "ns1",
                     "labels": {"snapshot.kubevirt.io/source-vm-name": "vm1",
                                "snapshot.kubevirt.io/source-vm-namespace": "ns1"}},
        "spec": {"source": {"persistentVolumeClaimName": "data-pvc"}, "volumeSnapshotClassName": "hp-b"}}


@pytest.mark.parametrize("obj,expected", [
    (None, CopyStatus("v", ready=False, error="missing")),
    ({}, CopyStatus("v", ready=False)),
    ({"status": {"creationTime": "2026-01-01T00:00:00Z", "readyToUse": False}}, CopyStatus("v", ready=False)),
    ({"status": {"readyToUse": True, "restoreSize": "1Gi"}},
     CopyStatus("v", ready=True, processed_bytes=1 << 30, total_bytes=1 << 30)),
    ({"status": {"readyToUse": False, "restoreSize": "10Mi", "error": {"message": "driver failed"}}},
     CopyStatus("v", ready=False, error="driver failed", total_bytes=10 << 20)),
])
def test_copy_status(obj, expected):
    assert copy_status("v", obj) == expected


@pytest.mark.parametrize("status,retryable", [(500, True), (503, True), (429, True), (403, False), (422, False)])
def test_api_errors_carry_the_status_message(status, retryable):
    err = ApiException(status=status, reason="Reason", body='{"kind":"Status","message":"the message"}')
    mapped = to_snapshotter_error(err, "create VolumeSnapshot ns/x")
    assert mapped.message == f"create VolumeSnapshot ns/x: the message (HTTP {status})"
    assert mapped.retryable is retryable


def test_transport_errors_are_retryable():
    mapped = to_snapshotter_error(ConnectionRefusedError("refused"), "get VolumeSnapshot ns/x")
    assert mapped.retryable and mapped.message == "get VolumeSnapshot ns/x: Kubernetes API unreachable: refused"


class _Ctx:
    """Just what ``main.volume_snapshotter`` reads of a ServiceContext."""

    def __init__(self, **params):
        self.params = {"volume_snapshotter": "embedded", "kubeconfig": None, "in_cluster": False, **params}
        self.exits = []

    def on_exit(self, callback):
        self.exits.append(callback)


def _kubeconfig(path, server="https://k8s.example:6443"):
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}], "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


async def test_main_selects_the_snapshotter(tmp_path):
    assert volume_snapshotter(_Ctx()) is None  # embedded: the manager builds it
    with pytest.raises(click.UsageError, match="go with --volume-snapshotter csi"):
        volume_snapshotter(_Ctx(kubeconfig=tmp_path / "k"))
    ctx = _Ctx(volume_snapshotter="csi", kubeconfig=_kubeconfig(tmp_path / "k"))
    chosen = volume_snapshotter(ctx)
    assert isinstance(chosen, CsiSnapshotter)
    assert chosen.api_client.configuration.host == "https://k8s.example:6443"
    await ctx.exits[0]()
    with pytest.raises(click.UsageError, match="Kubernetes configuration"):
        volume_snapshotter(_Ctx(volume_snapshotter="csi", in_cluster=True))  # no service account here
    with pytest.raises(click.UsageError, match="not both"):
        volume_snapshotter(_Ctx(volume_snapshotter="csi", in_cluster=True, kubeconfig=tmp_path / "k"))


def test_main_help_lists_the_choice():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "--volume-snapshotter [embedded|csi]" in out and "--kubeconfig" in out and "--in-cluster" in out
