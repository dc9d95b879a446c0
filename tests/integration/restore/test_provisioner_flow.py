"""The local provisioner on a real store with real qemu-img files: an empty claim, a claim filled
from a volume copy, refusals, and deletion waiting for the VMI that uses the claim."""

from __future__ import annotations

import asyncio
import json
import subprocess

from polling import wait_until
from restore_helpers import (
    MARKER,
    NS,
    PVCS,
    VMIS,
    bound_claim,
    claim_body,
    claim_phase,
    create_vmi,
    events_of,
    read_head,
    write_copy,
)
from services.virt_snapshot import local_volumes
from shared.errors import NotFound


def image_info(path):
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


async def test_empty_claim_is_provisioned_and_bound(object_store, snapshot_service):
    store = object_store
    pvc = await bound_claim(store, "data", "128Mi")
    uid = pvc["metadata"]["uid"]
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
    assert pvc["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "128Mi"}}
    disk = local_volumes.claim_disk(snapshot_service.pvc_root, NS, "data")
    info = image_info(disk)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 128 * 2**20)
    assert not disk.with_name("disk.img.part").exists()
    assert ("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume pvc-{uid}") in \
        await events_of(store, "data")


async def test_a_leftover_disk_of_the_same_name_is_never_adopted(object_store, snapshot_service, tmp_path):
    # a disk.img left by a deleted claim (or a wiped installation) with data in it and an old marker
    store = object_store
    old = write_copy(tmp_path / "old", "old-disk", MARKER, 64 * 2**20)
    disk = local_volumes.claim_disk(snapshot_service.pvc_root, NS, "reused")
    disk.parent.mkdir(parents=True)
    old.rename(disk)
    (disk.parent / local_volumes.OWNER_FILE).write_text("uid-of-a-deleted-claim\n")
    pvc = await bound_claim(store, "reused", "32Mi")
    assert image_info(disk)["virtual-size"] == 32 * 2**20
    assert read_head(disk, tmp_path) == bytes(len(MARKER))
    assert local_volumes.owner_of(disk) == pvc["metadata"]["uid"]


async def test_claim_from_a_copy_holds_its_data_and_grows_to_the_request(object_store, snapshot_service, tmp_path):
    store = object_store
    write_copy(snapshot_service.copies_dir, "vs-1", size=32 * 2**20)
    await store.create(PVCS, claim_body("restored", "64Mi", dataSource={
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "vs-1"}))
    pvc = await wait_until(lambda: claim_phase(store, "restored", "Bound"), timeout=20)
    assert pvc["status"]["capacity"] == {"storage": "64Mi"}
    disk = local_volumes.claim_disk(snapshot_service.pvc_root, NS, "restored")
    assert image_info(disk)["virtual-size"] == 64 * 2**20
    assert read_head(disk, tmp_path) == MARKER


async def test_missing_copy_waits_then_provisions_when_it_appears(object_store, snapshot_service, tmp_path):
    store = object_store
    await store.create(PVCS, claim_body("late", dataSource={
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "vs-late"}))
    await wait_until(lambda: claim_phase(store, "late", "Pending"), timeout=10)
    warning = ("Warning", "ProvisioningFailed", 'volumesnapshots.snapshot.storage.k8s.io "vs-late" not found')
    await wait_until(lambda: _has_event(store, "late", warning), timeout=10)
    write_copy(snapshot_service.copies_dir, "vs-late")
    await wait_until(lambda: claim_phase(store, "late", "Bound"), timeout=20)
    assert read_head(local_volumes.claim_disk(snapshot_service.pvc_root, NS, "late"), tmp_path) == MARKER


async def _has_event(store, name, event):
    return event in await events_of(store, name)


async def test_unsupported_class_and_mode_stay_pending(object_store, snapshot_service):
    store = object_store
    await store.create(PVCS, claim_body("fast", storageClassName="fast"))
    await store.create(PVCS, claim_body("block", volumeMode="Block"))
    await wait_until(lambda: claim_phase(store, "fast", "Pending"), timeout=10)
    await wait_until(lambda: claim_phase(store, "block", "Pending"), timeout=10)
    await wait_until(lambda: _has_event(store, "fast", ("Warning", "ProvisioningFailed",
                                                        'storageclass.storage.k8s.io "fast" not found')))
    await wait_until(lambda: _has_event(store, "block", ("Warning", "ProvisioningFailed",
                                                         "local provisioner supports Filesystem only")))
    assert not local_volumes.claim_dir(snapshot_service.pvc_root, NS, "fast").exists()


async def test_oversized_and_shared_claims_stay_pending_without_files(object_store, snapshot_service):
    store = object_store
    await store.create(PVCS, claim_body("huge", "900Ei"))
    await store.create(PVCS, claim_body("beyond-free", "1Pi"))
    await store.create(PVCS, claim_body("shared", accessModes=["ReadWriteMany"]))
    for name in ("huge", "beyond-free", "shared"):
        await wait_until(lambda n=name: claim_phase(store, n, "Pending"), timeout=10)
    await wait_until(lambda: _has_event(store, "huge", (
        "Warning", "ProvisioningFailed",
        f"requested storage 900Ei ({900 * 2**60} bytes) is larger than the local provisioner's maximum of 2Pi")))
    await wait_until(lambda: _has_event(store, "shared", (
        "Warning", "ProvisioningFailed", "local provisioner gives node-local disks: access modes ReadWriteMany "
        "not supported (supported: ReadWriteOnce, ReadWriteOncePod)")))

    async def capacity_refused():
        return any(t == "Warning" and r == "ProvisioningFailed" and m.startswith(
            "insufficient capacity: requested storage 1Pi but the local storage directory has ")
            for t, r, m in await events_of(store, "beyond-free"))
    await wait_until(capacity_refused, timeout=10)
    for name in ("huge", "beyond-free", "shared"):
        assert not local_volumes.claim_dir(snapshot_service.pvc_root, NS, name).exists()


async def test_deletion_waits_for_the_vmi_using_the_claim(object_store, snapshot_service):
    store = object_store
    await bound_claim(store, "used")
    vmi = await create_vmi(store, "vm-using")
    vmi["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "used"}}]
    vmi = await store.update(VMIS, vmi)
    await store.delete(PVCS, NS, "used")
    directory = local_volumes.claim_dir(snapshot_service.pvc_root, NS, "used")
    for _ in range(20):  # kept while the VMI runs
        pvc = await store.get(PVCS, NS, "used")
        assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
        assert directory.exists()
        await asyncio.sleep(0.05)
    vmi["status"] = {"phase": "Succeeded"}
    await store.update(VMIS, vmi, subresource="status")

    async def gone():
        try:
            await store.get(PVCS, NS, "used")
        except NotFound:
            return True
        return False
    await wait_until(gone, timeout=10)
    assert not directory.exists()
