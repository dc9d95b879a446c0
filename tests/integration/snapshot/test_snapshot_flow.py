"""virt-snapshot end to end on a real store: offline and online snapshots, deletion policies,
the failure deadline and a leader change between freeze and thaw."""

from __future__ import annotations

import asyncio

from services.virt_snapshot.handler_client import HandlerClient
from shared.api.snapshot_vocabulary import SNAPSHOT_SOURCE_FINALIZER
from snapshot_helpers import (
    CONTENTS,
    NS,
    SNAPSHOTS,
    VMS,
    StandInHandler,
    create_bound_pvc,
    create_running_vmi,
    create_snapshot,
    create_vm,
    get,
    make_claim_file,
    qemu_img_format,
    start_manager,
    stop_manager,
)
from tests.polling import wait_until


async def _snapshot_when(store, name, predicate, timeout=30.0):
    async def check():
        snap = await get(store, SNAPSHOTS, name)
        return snap if snap is not None and predicate(snap.get("status") or {}) else None
    return await wait_until(check, timeout=timeout, interval=0.05)


async def _unlocked(store, vm):
    obj = await get(store, VMS, vm)
    return not (obj.get("status") or {}).get("snapshotInProgress") and \
        SNAPSHOT_SOURCE_FINALIZER not in (obj["metadata"].get("finalizers") or [])


def _cond(status, ctype):
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


async def test_offline_snapshot_copies_the_claim_and_delete_policy_removes_it(object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"])
    _, task = await start_manager(object_store, "snap-1", storage_dir)
    try:
        created = await create_snapshot(object_store, "snap1", "vm1")
        uid = created["metadata"]["uid"]
        status = (await _snapshot_when(object_store, "snap1", lambda s: s.get("readyToUse")))["status"]
        assert status["phase"] == "Succeeded"
        assert status["indications"] == ["PartialSnapshot"]
        assert status["snapshotVolumes"] == {"includedVolumes": ["data"], "excludedVolumes": ["root"]}
        assert status["virtualMachineSnapshotContentName"] == f"vmsnapshot-content-{uid}"
        assert _cond(status, "Ready")["status"] == "True" and _cond(status, "Ready")["reason"] == "Ready"
        assert _cond(status, "Progressing")["status"] == "False"
        assert _cond(status, "Progressing")["reason"] == "Operation complete"
        assert status["creationTime"]
        copy = storage_dir / "volume-snapshots" / NS / f"vmsnapshot-{uid}-volume-data.qcow2"
        assert copy.exists() and qemu_img_format(copy) == "qcow2"
        assert not copy.with_name(copy.name + ".part").exists()
        content = await get(object_store, CONTENTS, f"vmsnapshot-content-{uid}")
        backups = content["spec"]["volumeBackups"]
        assert [(b["volumeName"], b["volumeSnapshotName"], b["persistentVolumeClaim"]["metadata"]["name"])
                for b in backups] == [("data", f"vmsnapshot-{uid}-volume-data", "data")]
        assert content["spec"]["source"]["virtualMachine"]["metadata"]["name"] == "vm1"
        assert content["status"]["readyToUse"] is True
        assert content["metadata"]["ownerReferences"][0]["uid"] == uid
        await wait_until(lambda: _unlocked(object_store, "vm1"), timeout=10)
        reasons = {e["reason"] for e in (await object_store.list("events", NS))[0]}
        assert {"SuccessfulVirtualMachineSnapshotContentCreate", "SuccessfulVolumeSnapshotCreate"} <= reasons

        await object_store.delete(SNAPSHOTS, NS, "snap1")
        await wait_until(lambda: _gone(object_store, SNAPSHOTS, "snap1"), timeout=10)
        await wait_until(lambda: _gone(object_store, CONTENTS, f"vmsnapshot-content-{uid}"), timeout=10)
        assert not copy.exists()
    finally:
        await stop_manager(task)


async def _gone(store, plural, name):
    return await get(store, plural, name) is None


async def test_retain_keeps_content_and_copy(object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"], container_disk=False)
    _, task = await start_manager(object_store, "snap-1", storage_dir)
    try:
        uid = (await create_snapshot(object_store, "keep", "vm1", deletion_policy="Retain"))["metadata"]["uid"]
        status = (await _snapshot_when(object_store, "keep", lambda s: s.get("readyToUse")))["status"]
        assert status.get("indications") is None  # offline, all volumes included
        await object_store.delete(SNAPSHOTS, NS, "keep")
        await wait_until(lambda: _gone(object_store, SNAPSHOTS, "keep"), timeout=10)
        await asyncio.sleep(0.5)
        content = await get(object_store, CONTENTS, f"vmsnapshot-content-{uid}")
        assert content is not None and not content["metadata"].get("deletionTimestamp")
        assert not content["metadata"].get("ownerReferences")
        assert (storage_dir / "volume-snapshots" / NS / f"vmsnapshot-{uid}-volume-data.qcow2").exists()
    finally:
        await stop_manager(task)


async def test_online_snapshot_freezes_copies_through_the_handler_and_thaws(object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"], container_disk=False)
    await create_running_vmi(object_store, "vm1", "node01")
    handler = StandInHandler(object_store, "node01", storage_dir / "pvcs")
    await handler.start()
    _, task = await start_manager(object_store, "snap-1", storage_dir)
    try:
        uid = (await create_snapshot(object_store, "on", "vm1"))["metadata"]["uid"]
        status = (await _snapshot_when(object_store, "on", lambda s: s.get("readyToUse")))["status"]
        assert status["indications"] == ["GuestAgent", "Online"]
        assert [i["indication"] for i in status["sourceIndications"]] == ["GuestAgent", "Online"]
        cmds = [c for c in handler.log if c != "BackupStatus"]
        assert cmds[:3] == ["Freeze", "BackupVolumes", "Unfreeze"]
        assert not handler.frozen
        assert (storage_dir / "volume-snapshots" / NS / f"vmsnapshot-{uid}-volume-data.qcow2").exists()
        await wait_until(lambda: _unlocked(object_store, "vm1"), timeout=10)
    finally:
        await stop_manager(task)
        await handler.stop()


async def test_paused_vm_is_not_frozen(object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"], container_disk=False)
    await create_running_vmi(object_store, "vm1", "node01", paused=True)
    handler = StandInHandler(object_store, "node01", storage_dir / "pvcs")
    await handler.start()
    _, task = await start_manager(object_store, "snap-1", storage_dir)
    try:
        await create_snapshot(object_store, "p", "vm1")
        status = (await _snapshot_when(object_store, "p", lambda s: s.get("readyToUse")))["status"]
        assert status["indications"] == ["Online", "Paused"]
        assert "Freeze" not in handler.log and "BackupVolumes" in handler.log
    finally:
        await stop_manager(task)
        await handler.stop()


async def test_freeze_without_answer_fails_at_the_deadline_thawed_and_cleaned(object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"], container_disk=False)
    await create_running_vmi(object_store, "vm1", "node01")
    handler = StandInHandler(object_store, "node01", storage_dir / "pvcs")
    handler.freeze_answers = False
    await handler.start()
    _, task = await start_manager(object_store, "snap-1", storage_dir, handlers=HandlerClient(object_store.bus,
                                                                                              timeout=1.0))
    try:
        uid = (await create_snapshot(object_store, "late", "vm1", failure_deadline="8s"))["metadata"]["uid"]
        status = (await _snapshot_when(object_store, "late", lambda s: s.get("phase") == "Failed",
                                       timeout=20))["status"]
        assert status["error"]["message"] == "snapshot deadline exceeded"
        assert _cond(status, "Failure")["reason"] == "snapshot deadline exceeded"
        assert _cond(status, "Progressing")["reason"] == "Operation failed"
        assert status["readyToUse"] is False
        await wait_until(lambda: "Unfreeze" in handler.log, timeout=10)
        await wait_until(lambda: not handler.frozen, timeout=10)  # the guest ends thawed
        assert handler.log.count("Freeze") >= 2  # the failed freeze was retried
        assert "BackupVolumes" not in handler.log  # the copy never started unfrozen
        await wait_until(lambda: _gone(object_store, CONTENTS, f"vmsnapshot-content-{uid}"), timeout=10)
        await wait_until(lambda: _unlocked(object_store, "vm1"), timeout=10)
        leftovers = list((storage_dir / "volume-snapshots").rglob("*")) if (
            storage_dir / "volume-snapshots").exists() else []
        assert [p for p in leftovers if p.is_file()] == []
    finally:
        await stop_manager(task)
        await handler.stop()


async def test_new_leader_thaws_and_finishes_after_the_old_one_dies_between_freeze_and_thaw(
        object_store, storage_dir):
    make_claim_file(storage_dir, "data")
    await create_bound_pvc(object_store, "data")
    await create_vm(object_store, "vm1", ["data"], container_disk=False)
    await create_running_vmi(object_store, "vm1", "node01")
    handler = StandInHandler(object_store, "node01", storage_dir / "pvcs")
    handler.backup_gate = asyncio.Event()
    await handler.start()
    first, task1 = await start_manager(object_store, "snap-1", storage_dir,
                                       handlers=HandlerClient(object_store.bus, timeout=2.0))
    try:
        await create_snapshot(object_store, "crash", "vm1")
        await wait_until(lambda: handler.frozen and "BackupVolumes" in handler.log, timeout=20)
        await stop_manager(task1)  # the leader dies between freeze and thaw
        assert handler.frozen
        handler.backup_gate.set()
        second, task2 = await start_manager(object_store, "snap-2", storage_dir)
        try:
            await wait_until(lambda: second.is_leader, timeout=15)
            status = (await _snapshot_when(object_store, "crash", lambda s: s.get("readyToUse")))["status"]
            assert status["phase"] == "Succeeded"
            assert not handler.frozen
            # the new leader re-runs Begin: it freezes again (idempotent in the handler, the
            # deadline moves) before its idempotent BackupVolumes; no copy is begun unfrozen
            begun = [i for i, kind in enumerate(handler.log) if kind == "BackupVolumes"]
            assert len(begun) == 2 and handler.log[begun[1] - 1] == "Freeze"
            assert "Unfreeze" not in handler.log[:begun[1]]
            await wait_until(lambda: _unlocked(object_store, "vm1"), timeout=10)
        finally:
            await stop_manager(task2)
    finally:
        await stop_manager(task1)
        await handler.stop()
