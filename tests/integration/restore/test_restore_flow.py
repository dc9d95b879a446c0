"""The restore controller on a real store with the local provisioner and real qemu-img files:
restore to the same VM, to a new name, InPlace, and each targetReadinessPolicy against a VM whose
VMI runs (a VMI in phase Running in the store)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from polling import wait_until
from restore_helpers import (
    MARKER,
    NS,
    PVCS,
    VMIS,
    VMS,
    bound_claim,
    complete,
    condition,
    create_restore,
    create_vm,
    create_vmi,
    events_of,
    make_snapshot,
    read_head,
    restore_state,
)
from services.virt_snapshot import local_volumes
from services.virt_snapshot import restore_decision as rd
from shared.admission.vmi_defaults import compute_stable_firmware_uuid
from shared.errors import NotFound


async def source_vm(store, copies_dir, name="vm1", claim="data-claim", run_strategy="Halted"):
    pvc = await bound_claim(store, claim)
    vm = await create_vm(store, name, claim, run_strategy)
    snap, copy = await make_snapshot(store, copies_dir, vm, pvc)
    return vm, snap, copy


async def test_restore_to_the_same_vm(object_store, snapshot_service, tmp_path):
    store = object_store
    vm, _, copy = await source_vm(store, snapshot_service.copies_dir)
    restore = await create_restore(store, "r1", "vm1")
    uid = restore["metadata"]["uid"]
    status = await complete(store, "r1")
    claim = f"restore-{uid}-data"
    assert status["restores"] == [{"volumeName": "data", "persistentVolumeClaim": claim, "volumeSnapshotName": copy}]
    assert status["restoreTime"]
    assert condition(status, "Ready") == ("True", "Operation complete")
    assert condition(status, "Progressing") == ("False", "Operation complete")
    restored = await store.get(VMS, NS, "vm1")
    assert restored["metadata"]["uid"] == vm["metadata"]["uid"]
    assert restored["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == f"r1-{uid}"
    assert "restoreInProgress" not in (restored.get("status") or {})
    spec = restored["spec"]["template"]["spec"]
    assert spec["volumes"][1] == {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
    assert spec["volumes"][0]["containerDisk"]["image"] == "quay.io/containerdisks/fedora"
    assert spec["domain"]["firmware"]["uuid"] == compute_stable_firmware_uuid("vm1")
    assert restored["spec"]["runStrategy"] == "Halted"
    pvc = await store.get(PVCS, NS, claim)
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == vm["metadata"]["uid"]
    assert pvc["metadata"]["labels"]["restore.kubevirt.io/source-vm-name"] == "vm1"
    assert pvc["metadata"]["annotations"]["restore.kubevirt.io/name"] == "r1"
    assert pvc["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                         "name": copy}
    assert read_head(local_volumes.claim_disk(snapshot_service.pvc_root, NS, claim), tmp_path) == MARKER
    stored = await store.get("virtualmachinerestores", NS, "r1")
    assert stored["metadata"]["finalizers"] == ["snapshot.kubevirt.io/vmrestore-protection"]
    assert stored["metadata"]["ownerReferences"][0]["name"] == "vm1"
    assert ("Normal", "VirtualMachineRestoreComplete", "Successfully completed VirtualMachineRestore r1") in \
        await events_of(store, "r1")
    # deleting the finished restore drops its finalizer and leaves the claims
    await store.delete("virtualmachinerestores", NS, "r1")

    async def gone():
        try:
            await store.get("virtualmachinerestores", NS, "r1")
        except NotFound:
            return True
        return False
    await wait_until(gone, timeout=10)
    assert (await store.get(PVCS, NS, claim))["status"]["phase"] == "Bound"


async def test_restore_to_a_new_vm(object_store, snapshot_service, tmp_path):
    store = object_store
    vm, _, _ = await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    patch = ('{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/0/macAddress", '
             '"value": "02:00:00:00:00:09"}')
    restore = await create_restore(store, "r-new", "vm2", volumeRestorePolicy="PrefixTargetName", patches=[patch])
    await complete(store, "r-new")
    vm2 = await store.get(VMS, NS, "vm2")
    assert vm2["metadata"]["uid"] != vm["metadata"]["uid"]
    assert vm2["spec"]["runStrategy"] == "Halted"  # KubeVirt creates a restored new VM stopped
    spec = vm2["spec"]["template"]["spec"]
    assert spec["volumes"][1] == {"name": "data", "persistentVolumeClaim": {"claimName": "vm2-data"}}
    assert spec["domain"]["devices"]["interfaces"][0]["macAddress"] == "02:00:00:00:00:09"
    assert "firmware" not in spec["domain"]
    assert vm2["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == \
        f"r-new-{restore['metadata']['uid']}"
    assert read_head(local_volumes.claim_disk(snapshot_service.pvc_root, NS, "vm2-data"), tmp_path) == MARKER
    # the source VM is untouched
    vm1 = await store.get(VMS, NS, "vm1")
    assert vm1["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"] == "data-claim"
    assert (await store.get(PVCS, NS, "data-claim"))["status"]["phase"] == "Bound"


async def test_in_place_replaces_the_claim(object_store, snapshot_service, tmp_path):
    store = object_store
    _, _, _ = await source_vm(store, snapshot_service.copies_dir)
    old = await store.get(PVCS, NS, "data-claim")
    restore = await create_restore(store, "r-inplace", "vm1", volumeRestorePolicy="InPlace")
    await complete(store, "r-inplace")
    pvc = await store.get(PVCS, NS, "data-claim")
    assert pvc["metadata"]["uid"] != old["metadata"]["uid"]
    assert pvc["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == \
        f"r-inplace-{restore['metadata']['uid']}"
    assert pvc["status"]["phase"] == "Bound"
    assert read_head(local_volumes.claim_disk(snapshot_service.pvc_root, NS, "data-claim"), tmp_path) == MARKER
    vm = await store.get(VMS, NS, "vm1")
    assert vm["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"] == "data-claim"


async def _stop_vmi(store, name="vm1"):
    """Plays virt-controller and the handler: the VMI ends and leaves the store."""
    await store.delete(VMIS, NS, name)


async def _reason_is(store, name, reason):
    return condition(await restore_state(store, name), "Progressing") == ("False", reason)


async def test_wait_grace_period_waits_then_restores(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    await create_vmi(store, "vm1")
    await create_restore(store, "r-wait", "vm1")
    await wait_until(lambda: _reason_is(store, "r-wait", rd.WAIT_GRACE_PERIOD_MESSAGE), timeout=10)
    assert ("Warning", "RestoreTargetNotReady", rd.VMI_EXISTS_EVENT_MESSAGE) in await events_of(store, "r-wait")
    assert "restoreInProgress" not in ((await store.get(VMS, NS, "vm1")).get("status") or {})
    await _stop_vmi(store)
    await complete(store, "r-wait")
    assert (await store.get(VMS, NS, "vm1"))["spec"]["runStrategy"] == "Always"  # kept


async def test_wait_grace_period_fails_after_five_minutes(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    await create_vmi(store, "vm1")
    await create_restore(store, "r-late", "vm1")
    await wait_until(lambda: _reason_is(store, "r-late", rd.WAIT_GRACE_PERIOD_MESSAGE), timeout=10)
    snapshot_service.clock.offset = timedelta(seconds=301)
    snapshot_service.restores.queue.add("default/r-late")
    await wait_until(lambda: _reason_is(store, "r-late", rd.RESTORE_GRACE_PERIOD_EXCEEDED_ERROR), timeout=10)
    status = await restore_state(store, "r-late")
    assert status["complete"] is False
    assert condition(status, "Failure") == ("True", rd.RESTORE_GRACE_PERIOD_EXCEEDED_ERROR)
    assert ("Warning", "Operation failed", f"VirtualMachineRestore failed {rd.RESTORE_GRACE_PERIOD_EXCEEDED_ERROR}") \
        in await events_of(store, "r-late")
    await _stop_vmi(store)  # a failed restore stays failed
    await asyncio.sleep(0.5)
    assert (await restore_state(store, "r-late"))["complete"] is False


async def test_stop_target_halts_the_vm_then_restores(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    await create_vmi(store, "vm1")
    await create_restore(store, "r-stop", "vm1", targetReadinessPolicy="StopTarget")

    async def halted():
        return (await store.get(VMS, NS, "vm1"))["spec"].get("runStrategy") == "Halted"
    await wait_until(halted, timeout=10)
    assert await _reason_is(store, "r-stop", rd.STOP_TARGET_MESSAGE)
    assert ("Warning", "RestoreTargetNotReady", rd.STOP_TARGET_MESSAGE) in await events_of(store, "r-stop")
    await asyncio.sleep(2)  # the VMI is still there: the restore waits without a hot loop
    recorded, _ = await store.list("events", NS)
    not_ready = [e for e in recorded if e["involvedObject"]["name"] == "r-stop"
                 and e["reason"] == "RestoreTargetNotReady"]
    assert 1 <= sum(e.get("count") or 1 for e in not_ready) <= 2
    assert (await store.get(VMS, NS, "vm1"))["spec"]["runStrategy"] == "Halted"
    await _stop_vmi(store)
    await complete(store, "r-stop")
    assert (await store.get(VMS, NS, "vm1"))["spec"]["runStrategy"] == "Halted"


async def test_fail_immediate(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    await create_vmi(store, "vm1")
    await create_restore(store, "r-fail", "vm1", targetReadinessPolicy="FailImmediate")
    await wait_until(lambda: _reason_is(store, "r-fail", rd.TARGET_NOT_READY_FAILURE_MESSAGE), timeout=10)
    status = await restore_state(store, "r-fail")
    assert status["complete"] is False
    assert condition(status, "Ready") == ("False", rd.TARGET_NOT_READY_FAILURE_MESSAGE)
    assert condition(status, "Failure") == ("True", rd.TARGET_NOT_READY_FAILURE_MESSAGE)
    assert not [p for p in (await store.list(PVCS, NS))[0] if p["metadata"]["name"].startswith("restore-")]


async def test_wait_eventually_waits_past_the_grace_period(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir, run_strategy="Always")
    await create_vmi(store, "vm1")
    snapshot_service.clock.offset = timedelta(hours=1)
    await create_restore(store, "r-ev", "vm1", targetReadinessPolicy="WaitEventually")
    await wait_until(lambda: _reason_is(store, "r-ev", rd.WAIT_EVENTUALLY_MESSAGE), timeout=10)
    await _stop_vmi(store)
    await complete(store, "r-ev")


async def test_restore_lock_held_by_another_restore(object_store, snapshot_service):
    store = object_store
    await source_vm(store, snapshot_service.copies_dir)
    vm = await store.get(VMS, NS, "vm1")
    vm["status"] = {"restoreInProgress": "other"}
    await store.update(VMS, vm, subresource="status")
    await create_restore(store, "r-locked", "vm1")
    await wait_until(lambda: _reason_is(store, "r-locked", "vm restore other in progress"), timeout=10)
    vm = await store.get(VMS, NS, "vm1")
    vm["status"] = {}
    await store.update(VMS, vm, subresource="status")
    await complete(store, "r-locked")
