"""The CSI VolumeSnapshotter driving the real ``kubernetes`` client (through a kubeconfig) against
a mock Kubernetes API, and one snapshot through the real content controller with it."""

from __future__ import annotations

import asyncio
import json

import pytest

from mock_kubernetes_api import CUT, SNAP, serve_mock
from services.virt_snapshot.csi_snapshotter import CsiSnapshotter
from shared.kube_client import api_client_from
from services.virt_snapshot.volume_snapshotter import SnapshotRequest, SnapshotterError, VolumeRequest
from shared.api.storage import TypedLocalObjectReference
from snapshot_helpers import (
    CONTENTS,
    NS,
    SNAPSHOTS,
    create_bound_pvc,
    create_snapshot,
    create_vm,
    get,
    start_manager,
    stop_manager,
)
from tests.polling import wait_until

HOSTPATH = "hostpath.csi.k8s.io"


@pytest.fixture
async def kube(tmp_path):
    """(mock Kubernetes API, CsiSnapshotter on the real client through a kubeconfig pointing at it)."""
    async with serve_mock(tmp_path) as (mock, kubeconfig):
        snapshotter = CsiSnapshotter(api_client_from(kubeconfig), request_timeout=5.0, creation_timeout=1.0,
                                     creation_interval=0.05)
        mock.add_storage_class("csi-hostpath", HOSTPATH)
        try:
            yield mock, snapshotter
        finally:
            snapshotter.close()


def request_for(*claims: str) -> SnapshotRequest:
    return SnapshotRequest(namespace=NS, snapshot_uid="u1", vm_name="vm1",
                           volumes=[VolumeRequest(c, c, f"vmsnapshot-u1-volume-{c}") for c in claims])


async def test_begin_creates_one_snapshot_per_volume_with_the_default_class_and_is_idempotent(kube):
    mock, snapshotter = kube
    mock.add_class("other", "ebs.csi.aws.com")
    mock.add_class("hp-plain", HOSTPATH)
    mock.add_class("hp-default", HOSTPATH, default=True)
    mock.add_claim("a", "csi-hostpath")
    mock.add_claim("b", "csi-hostpath")
    assert await snapshotter.begin(request_for("a", "b")) == CUT
    assert set(mock.snapshots) == {(NS, "vmsnapshot-u1-volume-a"), (NS, "vmsnapshot-u1-volume-b")}
    made = mock.snapshots[(NS, "vmsnapshot-u1-volume-a")]
    assert made["spec"] == {"source": {"persistentVolumeClaimName": "a"}, "volumeSnapshotClassName": "hp-default"}
    assert made["metadata"]["labels"] == {"snapshot.kubevirt.io/source-vm-name": "vm1",
                                          "snapshot.kubevirt.io/source-vm-namespace": NS}
    posts = [r for r in mock.requests if r[0] == "POST"]
    assert len(posts) == 2
    # again (a new leader): nothing created twice, same point in time
    assert await snapshotter.begin(request_for("a", "b")) == CUT
    assert [r for r in mock.requests if r[0] == "POST"] == posts
    # an AlreadyExists answer (created by an attempt whose answer was lost) is fine too
    mock.add_claim("c", "csi-hostpath")
    mock.snapshots[(NS, "vmsnapshot-u1-volume-c")] = {"metadata": {"name": "vmsnapshot-u1-volume-c"},
                                                      "status": {"creationTime": CUT}}
    mock.fail[("GET", f"{SNAP}/namespaces/{NS}/volumesnapshots/vmsnapshot-u1-volume-c")] = 404
    assert await snapshotter.begin(request_for("c")) == CUT
    assert ("POST", f"{SNAP}/namespaces/{NS}/volumesnapshots") in mock.requests[-3:]  # answered 409
    assert snapshotter.claim_data_source("vmsnapshot-u1-volume-a") == TypedLocalObjectReference(
        api_group="snapshot.storage.k8s.io", kind="VolumeSnapshot", name="vmsnapshot-u1-volume-a")


async def test_class_by_driver_and_storage_profile(kube):
    mock, snapshotter = kube
    mock.add_class("only-hp", HOSTPATH)
    mock.add_class("other", "ebs.csi.aws.com")
    mock.add_claim("a", "csi-hostpath")
    await snapshotter.begin(request_for("a"))
    assert mock.snapshots[(NS, "vmsnapshot-u1-volume-a")]["spec"]["volumeSnapshotClassName"] == "only-hp"
    mock.profiles["csi-hostpath"] = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                                     "metadata": {"name": "csi-hostpath"}, "status": {"snapshotClass": "other"}}
    mock.add_claim("b", "csi-hostpath")
    await snapshotter.begin(request_for("b"))
    assert mock.snapshots[(NS, "vmsnapshot-u1-volume-b")]["spec"]["volumeSnapshotClassName"] == "other"


async def test_volume_without_class_or_storage_class_creates_nothing(kube):
    mock, snapshotter = kube
    mock.add_class("ebs", "ebs.csi.aws.com")
    mock.add_claim("a", "csi-hostpath")
    mock.add_claim("nosc", None)
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.begin(request_for("a"))
    assert err.value.message == ("No VolumeSnapshotClass: Volume snapshots are not configured for this "
                                 "StorageClass [csi-hostpath] [a]")
    assert not err.value.retryable
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.begin(request_for("nosc"))
    assert err.value.message == f"{NS}/nosc VolumeSnapshot requested but no storage class"
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.begin(request_for("absent"))
    assert err.value.message == (f'get PersistentVolumeClaim {NS}/absent: persistentvolumeclaims "absent" '
                                 f'not found (HTTP 404)') and not err.value.retryable
    assert mock.snapshots == {}


async def test_begin_returns_only_when_every_snapshot_has_its_creation_time(kube):
    mock, snapshotter = kube
    mock.add_class("hp", HOSTPATH)
    mock.add_claim("a", "csi-hostpath")
    mock.add_claim("b", "csi-hostpath")
    mock.cut_on_create = False
    begin = asyncio.create_task(snapshotter.begin(request_for("a", "b")))
    await wait_until(lambda: len(mock.snapshots) == 2, timeout=5)
    mock.snapshots[(NS, "vmsnapshot-u1-volume-a")]["status"] = {"creationTime": "2026-03-04T05:06:07Z"}
    await asyncio.sleep(0.3)
    assert not begin.done()  # b not cut yet: the caller keeps the guest frozen
    mock.snapshots[(NS, "vmsnapshot-u1-volume-b")]["status"] = {"creationTime": "2026-03-04T05:06:09Z"}
    assert await asyncio.wait_for(begin, 5) == "2026-03-04T05:06:09Z"  # the latest cut
    # never cut: a retryable error after creation_timeout; an error before the cut is reported
    mock.add_claim("c", "csi-hostpath")
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.begin(request_for("c"))
    assert err.value.retryable and err.value.message == (
        f"VolumeSnapshot {NS}/vmsnapshot-u1-volume-c has no status.creationTime after 1s")
    mock.snapshots[(NS, "vmsnapshot-u1-volume-c")]["status"] = {"error": {"message": "driver refused"}}
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.begin(request_for("c"))
    assert err.value.message == "VolumeSnapshot vmsnapshot-u1-volume-c error: driver refused"


async def test_poll_maps_ready_error_size_and_missing(kube):
    mock, snapshotter = kube
    mock.add_class("hp", HOSTPATH)
    for c in ("a", "b", "c"):
        mock.add_claim(c, "csi-hostpath")
    await snapshotter.begin(request_for("a", "b", "c"))
    mock.snapshots[(NS, "vmsnapshot-u1-volume-a")]["status"].update(readyToUse=True, restoreSize="64Mi")
    mock.snapshots[(NS, "vmsnapshot-u1-volume-b")]["status"].update(readyToUse=False,
                                                                   error={"message": "snapshot failed"})
    del mock.snapshots[(NS, "vmsnapshot-u1-volume-c")]
    copies = await snapshotter.poll(request_for("a", "b", "c"))
    assert [(c.volume_snapshot_name, c.ready, c.error, c.total_bytes) for c in copies] == [
        ("vmsnapshot-u1-volume-a", True, None, 64 << 20),
        ("vmsnapshot-u1-volume-b", False, "snapshot failed", 0),
        ("vmsnapshot-u1-volume-c", False, "missing", 0)]
    mock.fail[("GET", f"{SNAP}/namespaces/{NS}/volumesnapshots/vmsnapshot-u1-volume-a")] = 503
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.poll(request_for("a"))
    assert err.value.retryable and err.value.message.endswith("injected failure 503 (HTTP 503)")


async def test_cancel_and_delete_remove_the_snapshots_and_accept_404(kube):
    mock, snapshotter = kube
    mock.add_class("hp", HOSTPATH)
    mock.add_claim("a", "csi-hostpath")
    mock.add_claim("b", "csi-hostpath")
    await snapshotter.begin(request_for("a", "b"))
    await snapshotter.cancel(request_for("a"))
    assert set(mock.snapshots) == {(NS, "vmsnapshot-u1-volume-b")}
    await snapshotter.delete(NS, ["vmsnapshot-u1-volume-a", "vmsnapshot-u1-volume-b"])
    assert mock.snapshots == {}
    deletes = [p for m, p in mock.requests if m == "DELETE"]
    assert deletes.count(f"{SNAP}/namespaces/{NS}/volumesnapshots/vmsnapshot-u1-volume-a") == 2  # 2nd: 404
    mock.fail[("DELETE", f"{SNAP}/namespaces/{NS}/volumesnapshots/x")] = 403
    with pytest.raises(SnapshotterError) as err:
        await snapshotter.delete(NS, ["x"])
    assert not err.value.retryable


async def test_unreachable_api_is_a_retryable_error(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}))
    api_client = api_client_from(kubeconfig)
    api_client.configuration.retries = False
    snapshotter = CsiSnapshotter(api_client, request_timeout=2.0)
    try:
        with pytest.raises(SnapshotterError) as err:
            await snapshotter.poll(request_for("a"))
        assert err.value.retryable and "Kubernetes API unreachable" in err.value.message
    finally:
        snapshotter.close()


async def test_snapshot_through_the_content_controller_with_csi(kube, object_store, storage_dir):
    """The real snapshot and content controllers with the CSI snapshotter: VolumeSnapshot made,
    content ready once the mock marks it readyToUse, deletion deletes the VolumeSnapshot."""
    mock, snapshotter = kube
    mock.add_class("hp", HOSTPATH, default=True)
    mock.add_claim("data", "csi-hostpath")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"])
    _, task = await start_manager(object_store, "snap-csi-1", storage_dir, snapshotter=snapshotter)
    try:
        uid = (await create_snapshot(object_store, "snap1", "vm1"))["metadata"]["uid"]
        name = f"vmsnapshot-{uid}-volume-data"
        await wait_until(lambda: (NS, name) in mock.snapshots, timeout=20)
        assert mock.snapshots[(NS, name)]["spec"] == {"source": {"persistentVolumeClaimName": "data"},
                                                      "volumeSnapshotClassName": "hp"}

        async def content_status():
            content = await get(object_store, CONTENTS, f"vmsnapshot-content-{uid}")
            return (content or {}).get("status")
        status = await wait_until(lambda: _with(content_status(), "creationTime"), timeout=20)
        assert status["creationTime"] == CUT and status["readyToUse"] is False
        mock.snapshots[(NS, name)]["status"].update(readyToUse=True, restoreSize="1Gi")
        snap = await wait_until(lambda: _with(get(object_store, SNAPSHOTS, "snap1"), "readyToUse", status=True),
                                timeout=20)
        assert snap["status"]["phase"] == "Succeeded" and snap["status"]["creationTime"] == CUT
        content = await get(object_store, CONTENTS, f"vmsnapshot-content-{uid}")
        assert content["status"]["volumeSnapshotStatus"][0]["volumeSnapshotName"] == name
        assert content["status"]["volumeSnapshotStatus"][0]["readyToUse"] is True

        await object_store.delete(SNAPSHOTS, NS, "snap1")
        await wait_until(lambda: (NS, name) not in mock.snapshots, timeout=20)
        await wait_until(lambda: _absent(get(object_store, CONTENTS, f"vmsnapshot-content-{uid}")), timeout=20)
    finally:
        await stop_manager(task)


async def _with(awaitable, key, *, status=False):
    obj = await awaitable
    if obj is None:
        return None
    part = obj.get("status") or {} if status else obj
    return obj if part.get(key) else None


async def _absent(awaitable):
    return await awaitable is None
