"""Table tests of the restore decisions (services.virt_snapshot.restore_decision / restore_volumes)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.virt_snapshot import restore_decision as rd
from services.virt_snapshot import restore_volumes as rv
from shared.api.snapshot import (
    VirtualMachineRestore,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotContent,
)
from shared.api.vmi import VirtualMachineInstance
from shared.informer import decode_as

CREATED = datetime(2026, 12, 7, 10, 0, 0, tzinfo=timezone.utc)
SOURCE = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "vs-data"}


def restore(**spec):
    body = {"metadata": {"name": "r1", "namespace": "default", "uid": "ruid",
                         "creationTimestamp": "2026-12-07T10:00:00Z"},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": spec.pop("target", "vm1")},
                     "virtualMachineSnapshotName": "snap1", **spec}}
    return decode_as(VirtualMachineRestore, body)


def vmi(phase):
    return decode_as(VirtualMachineInstance, {"metadata": {"name": "vm1", "namespace": "default"},
                                              "spec": {"domain": {"devices": {}}}, "status": {"phase": phase}})


READINESS = [
    # (id, spec, target_exists, vmi, now, step, reason, event, recheck)
    ("no target", {}, False, None, CREATED, rd.ReadinessStep.READY, "", "", None),
    ("no vmi", {}, True, None, CREATED, rd.ReadinessStep.READY, "", "", None),
    ("final vmi", {}, True, vmi("Succeeded"), CREATED, rd.ReadinessStep.READY, "", "", None),
    ("default waits within the grace period", {}, True, vmi("Running"), CREATED + timedelta(seconds=60),
     rd.ReadinessStep.WAIT, rd.WAIT_GRACE_PERIOD_MESSAGE, rd.VMI_EXISTS_EVENT_MESSAGE, 240.5),
    ("default fails after the grace period", {}, True, vmi("Running"), CREATED + timedelta(seconds=301),
     rd.ReadinessStep.FAIL, rd.RESTORE_GRACE_PERIOD_EXCEEDED_ERROR, "", None),
    ("StopTarget", {"targetReadinessPolicy": "StopTarget"}, True, vmi("Running"), CREATED,
     rd.ReadinessStep.STOP, rd.STOP_TARGET_MESSAGE, rd.STOP_TARGET_MESSAGE, rd.STOP_TARGET_RECHECK_SECONDS),
    ("FailImmediate", {"targetReadinessPolicy": "FailImmediate"}, True, vmi("Scheduling"), CREATED,
     rd.ReadinessStep.FAIL, rd.TARGET_NOT_READY_FAILURE_MESSAGE, "", None),
    ("WaitEventually long after", {"targetReadinessPolicy": "WaitEventually"}, True, vmi("Running"),
     CREATED + timedelta(days=3), rd.ReadinessStep.WAIT, rd.WAIT_EVENTUALLY_MESSAGE, rd.VMI_EXISTS_EVENT_MESSAGE,
     None),
]


@pytest.mark.parametrize(("spec", "exists", "the_vmi", "now", "step", "reason", "event", "recheck"),
                         [c[1:] for c in READINESS], ids=[c[0] for c in READINESS])
def test_target_readiness(spec, exists, the_vmi, now, step, reason, event, recheck):
    got = rd.compute_target_readiness(restore(**spec), target_exists=exists, vmi=the_vmi, now=now)
    assert (got.step, got.reason, got.event_message, got.recheck_after) == (step, reason, event, recheck)


def test_kubevirt_messages_verbatim():
    assert rd.WAIT_GRACE_PERIOD_MESSAGE == ("Waiting for target VM to be powered off. Please stop the restore target "
                                            "to proceed with restore, or the operation will fail after 5m0s")
    assert rd.RESTORE_GRACE_PERIOD_EXCEEDED_ERROR == ("Restore target failed to be ready within 5m0s. Please power "
                                                      "off the target VM before attempting restore")


def test_unknown_policy_is_an_error():
    with pytest.raises(rd.RestoreError, match="unknown targetReadinessPolicy: Sometimes"):
        rd.compute_target_readiness(restore(targetReadinessPolicy="Sometimes"), target_exists=True,
                                    vmi=vmi("Running"), now=CREATED)


NAMES = [
    ("default RandomizeNames", {}, "restore-ruid-data"),
    ("RandomizeNames", {"volumeRestorePolicy": "RandomizeNames"}, "restore-ruid-data"),
    ("InPlace keeps the claim", {"volumeRestorePolicy": "InPlace"}, "data-claim"),
    ("PrefixTargetName", {"volumeRestorePolicy": "PrefixTargetName"}, "vm1-data"),
    ("override wins", {"volumeRestorePolicy": "InPlace",
                       "volumeRestoreOverrides": [{"volumeName": "data", "restoreName": "mine"}]}, "mine"),
    ("override for another volume", {"volumeRestoreOverrides": [{"volumeName": "x", "restoreName": "mine"}]},
     "restore-ruid-data"),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in NAMES], ids=[c[0] for c in NAMES])
def test_restore_volume_name(spec, expected):
    assert rv.restore_volume_name(restore(**spec), "data", "data-claim") == expected


def test_prefix_target_name_is_cut_to_63():
    name = rv.restore_volume_name(restore(target="v" * 70, volumeRestorePolicy="PrefixTargetName"), "data", "c")
    assert len(name) == 63 and name.endswith("-data")


def snapshot(phase="Succeeded", ready=True, content="content1"):
    return decode_as(VirtualMachineSnapshot, {
        "metadata": {"name": "snap1", "namespace": "default"},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm1"}},
        "status": {"phase": phase, "readyToUse": ready, "virtualMachineSnapshotContentName": content,
                   "sourceUID": "vm-uid"}})


@pytest.mark.parametrize(("snap", "message"), [
    (None, "VMSnapshot default/snap1 does not exist"),
    (snapshot(phase="Failed", ready=False), "VMSnapshot default/snap1 failed and is invalid to use"),
    (snapshot(phase="InProgress", ready=False), "VMSnapshot default/snap1 not ready"),
    (snapshot(content=None), "no snapshot content name in default/snap1"),
])
def test_check_snapshot_errors(snap, message):
    with pytest.raises(rd.RestoreError) as err:
        rd.check_snapshot("default", "snap1", snap)
    assert err.value.message == message


def test_source_and_target_differ():
    assert rd.check_snapshot("default", "snap1", snapshot()) == "content1"
    assert not rd.source_and_target_differ("vm-uid", snapshot())
    assert rd.source_and_target_differ("other", snapshot())


def content(volumes=None, owner_refs=None):
    claim_meta = {"name": "data-claim", "namespace": "default", "labels": {"app": "db"},
                  "annotations": {"pv.kubernetes.io/bound-by-controller": "yes", "keep": "me"}}
    if owner_refs:
        claim_meta["ownerReferences"] = owner_refs
    vm_volumes = volumes or [
        {"name": "root", "containerDisk": {"image": "img"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
    ]
    return decode_as(VirtualMachineSnapshotContent, {
        "metadata": {"name": "content1", "namespace": "default"},
        "spec": {"virtualMachineSnapshotName": "snap1",
                 "source": {"virtualMachine": {
                     "metadata": {"name": "vm1", "namespace": "default", "uid": "vm-uid", "labels": {"a": "b"}},
                     "spec": {"runStrategy": "Always", "template": {"spec": {
                         "domain": {"devices": {"interfaces": [{"name": "default", "macAddress": "02:00:00:00:00:01"}]}},
                         "volumes": vm_volumes}}}}},
                 "volumeBackups": [{"volumeName": "data", "volumeSnapshotName": "vs-data",
                                    "persistentVolumeClaim": {"metadata": claim_meta, "spec": {
                                        "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                        "resources": {"requests": {"storage": "1Gi"}}}}}]},
        "status": {"readyToUse": True}})


def test_volume_restores_and_claim_body():
    r = restore(volumeRestoreOverrides=[{"volumeName": "data", "labels": {"x": "y"}, "annotations": {"o": "p"}}])
    restores = rv.compute_volume_restores(r, content())
    assert [(v.volume_name, v.persistent_volume_claim_name, v.volume_snapshot_name) for v in restores] == [
        ("data", "restore-ruid-data", "vs-data")]
    body = rv.compute_restore_claim(r, content().spec.volume_backups[0], "restore-ruid-data", data_source=SOURCE,
                                    source_vm_name="vm1", source_vm_namespace="default", source_vm_uid="vm-uid",
                                    target=("vm1", "vm-uid"))
    assert body["metadata"] == {
        "name": "restore-ruid-data", "namespace": "default",
        "labels": {"app": "db", "x": "y", "restore.kubevirt.io/source-vm-name": "vm1",
                   "restore.kubevirt.io/source-vm-namespace": "default"},
        "annotations": {"keep": "me", "o": "p", "restore.kubevirt.io/name": "r1",
                        "restore.kubevirt.io/lastRestoreUID": "r1-ruid"},
        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "vm1",
                             "uid": "vm-uid", "controller": True, "blockOwnerDeletion": True}]}
    assert body["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                            "storageClassName": "local", "dataSource": SOURCE, "dataSourceRef": SOURCE}


def test_claim_for_new_target_marks_ownership_only_when_source_owned():
    refs = [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "vm1", "uid": "vm-uid"}]
    owned = content(owner_refs=refs).spec.volume_backups[0]
    plain = content().spec.volume_backups[0]
    kw = {"data_source": SOURCE, "source_vm_name": "vm1", "source_vm_namespace": "default",
          "source_vm_uid": "vm-uid", "target": None}
    body = rv.compute_restore_claim(restore(target="vm2"), owned, "c", **kw)
    assert body["metadata"]["annotations"]["restore.kubevirt.io/owned-by-vm"] == "r1"
    assert "ownerReferences" not in body["metadata"]
    assert "restore.kubevirt.io/owned-by-vm" not in rv.compute_restore_claim(
        restore(target="vm2"), plain, "c", **kw)["metadata"]["annotations"]
    none = rv.compute_restore_claim(restore(volumeOwnershipPolicy="None"), owned, "c",
                                    **{**kw, "target": ("vm1", "vm-uid")})
    assert "ownerReferences" not in none["metadata"]


def test_memory_dump_volumes_are_not_restored():
    c = content(volumes=[{"name": "data", "memoryDump": {"claimName": "data-claim"}}])
    assert rv.compute_volume_restores(restore(), c) == []


def _restores():
    return rv.compute_volume_restores(restore(), content())


def test_restored_vm_same_name_keeps_run_strategy_and_sets_firmware_uuid():
    target = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
              "metadata": {"name": "vm1", "namespace": "default", "uid": "vm-uid", "resourceVersion": "7",
                           "annotations": {"mine": "1"}},
              "spec": {"runStrategy": "Halted", "template": {"spec": {"volumes": []}}}}
    snap_vm = {"metadata": {"name": "vm1"}, "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {}, "volumes": [
                   {"name": "root", "containerDisk": {"image": "img"}},
                   {"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}}]}}}}
    vm = rv.compute_restored_vm(restore(patches=['{"op": "add", "path": "/spec/x", "value": 1}']), snap_vm, target,
                                _restores(), "fw-uuid")
    assert vm["metadata"] == {"name": "vm1", "namespace": "default", "uid": "vm-uid", "resourceVersion": "7",
                              "annotations": {"mine": "1", "restore.kubevirt.io/lastRestoreUID": "r1-ruid"}}
    assert vm["spec"]["runStrategy"] == "Halted"
    assert "x" not in vm["spec"]  # KubeVirt applies patches only to a new VM
    assert vm["spec"]["template"]["spec"]["volumes"] == [
        {"name": "root", "containerDisk": {"image": "img"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "restore-ruid-data"}}]
    assert vm["spec"]["template"]["spec"]["domain"]["firmware"] == {"uuid": "fw-uuid"}


def test_restored_vm_new_name_is_halted_patched_without_firmware_uuid():
    snap_vm = {"metadata": {"name": "vm1", "labels": {"a": "b"}, "annotations": {"n": "m"}},
               "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {"interfaces": [
                   {"name": "default", "macAddress": "02:00:00:00:00:01"}]}}, "volumes": [
                   {"name": "data", "dataVolume": {"name": "data-claim"}}]}}}}
    patch = ('{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/0/macAddress", '
             '"value": "02:00:00:00:00:02"}')
    vm = rv.compute_restored_vm(restore(target="vm2", patches=[patch]), snap_vm, None, _restores(), "fw")
    assert vm["metadata"] == {"name": "vm2", "namespace": "default", "labels": {"a": "b"},
                              "annotations": {"n": "m", "restore.kubevirt.io/lastRestoreUID": "r1-ruid"}}
    assert vm["spec"]["runStrategy"] == "Halted"
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert "firmware" not in domain
    assert domain["devices"]["interfaces"][0]["macAddress"] == "02:00:00:00:00:02"
    assert vm["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "restore-ruid-data"}}]


@pytest.mark.parametrize(("target_vm", "expected"), [
    pytest.param(None, "fw-of-vm2", id="new-vm-gets-the-stable-uuid-of-its-name"),
    pytest.param({"metadata": {"name": "vm2"}, "spec": {"runStrategy": "Halted", "template": {"spec": {
        "domain": {"firmware": {"uuid": "own-uuid"}}}}}}, "own-uuid", id="existing-other-vm-keeps-its-own"),
    pytest.param({"metadata": {"name": "vm2"}, "spec": {"runStrategy": "Halted", "template": {"spec": {}}}},
                 "fw-of-vm2", id="existing-other-vm-without-one-gets-the-stable-uuid"),
])
def test_restored_vm_of_another_name_never_takes_the_snapshots_firmware_uuid(target_vm, expected):
    """kubevirt-py: one libvirt daemon per node, domain UUID = firmware UUID; the copy must run beside
    the original (two domains of one UUID cannot be defined)."""
    snap_vm = {"metadata": {"name": "vm1"}, "spec": {"runStrategy": "Always", "template": {"spec": {
        "domain": {"firmware": {"uuid": "uuid-of-vm1", "serial": "s1"}}}}}}
    vm = rv.compute_restored_vm(restore(target="vm2"), snap_vm, target_vm, [], "fw-of-vm2")
    assert vm["spec"]["template"]["spec"]["domain"]["firmware"] == {"uuid": expected, "serial": "s1"}


def test_running_field_becomes_false():
    snap_vm = {"metadata": {"name": "vm1"}, "spec": {"running": True, "template": {"spec": {}}}}
    vm = rv.compute_restored_vm(restore(target="vm2"), snap_vm, None, [], "fw")
    assert vm["spec"]["running"] is False and "runStrategy" not in vm["spec"]


def test_bad_patch_is_an_error():
    snap_vm = {"metadata": {"name": "vm1"}, "spec": {"template": {"spec": {}}}}
    with pytest.raises(rd.RestoreError, match="error patching VM vm2"):
        rv.compute_restored_vm(restore(target="vm2", patches=['{"op": "remove", "path": "/spec/nope"}']),
                               snap_vm, None, [], "fw")


def test_conditions_keep_transition_time_when_unchanged():
    first = rd.progress_conditions(None, progressing=True, ready=False, reason=rd.INITIALIZING, now=CREATED)
    later = CREATED + timedelta(minutes=1)
    same = rd.progress_conditions(first, progressing=True, ready=False, reason=rd.INITIALIZING, now=later)
    assert same == first
    done = rd.progress_conditions(first, progressing=False, ready=True, reason=rd.OPERATION_COMPLETE, now=later,
                                  failed=False)
    assert [(c.type, c.status, c.reason, c.last_transition_time) for c in done] == [
        ("Progressing", "False", "Operation complete", "2026-12-07T10:01:00Z"),
        ("Ready", "True", "Operation complete", "2026-12-07T10:01:00Z")]
    failed = rd.progress_conditions(first, progressing=False, ready=False, reason="x", now=later, failed=True)
    assert [c.type for c in failed] == ["Progressing", "Ready", "Failure"]
    assert rd.is_failed(restore()) is False


@pytest.mark.parametrize(("spec", "needed"), [
    ({"runStrategy": "Always"}, True),
    ({"runStrategy": "RerunOnFailure"}, True),
    ({"running": True}, True),
    ({"runStrategy": "Halted"}, False),   # already stopping: no new write, no new Event
    ({"running": False}, False),
    ({}, False),                          # neither field: Halted
    ({"running": True, "runStrategy": "Halted"}, True),  # invalid: write Halted to fix it
])
def test_stop_needed_only_until_halted(spec, needed):
    from shared.api.vm import VirtualMachine
    vm = decode_as(VirtualMachine, {"metadata": {"name": "vm1", "namespace": "default"},
                                    "spec": {**spec, "template": {"spec": {"domain": {"devices": {}}}}}})
    assert rd.stop_needed(vm) is needed
    assert 0 < rd.STOP_TARGET_RECHECK_SECONDS <= 2
