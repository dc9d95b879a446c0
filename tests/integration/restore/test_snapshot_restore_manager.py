"""virt-snapshot's manager end to end on a real store with real qemu-img files: a claim
provisioned by the local provisioner, written, snapshotted while its VM is stopped (the embedded
VolumeSnapshotter's offline copy), changed, and restored: the restored claim holds the data of
snapshot time and the VM points at it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess

from polling import wait_until
from restore_helpers import NS, PVCS, SNAPSHOTS, VMS, bound_claim, complete, create_restore, create_vm, read_head
from services.virt_snapshot import local_volumes
from services.virt_snapshot.manager import SnapshotManager


def overwrite(disk, payload: bytes, size: int) -> None:
    """Replace a claim's qcow2 with one whose first bytes are ``payload`` (its VM is stopped)."""
    raw = disk.with_name("fill.raw")
    with open(raw, "wb") as f:
        f.write(payload)
        f.truncate(size)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()


async def test_snapshot_then_restore_through_the_manager(object_store, tmp_path):
    store = object_store
    state = tmp_path / "state"
    manager = SnapshotManager(store, "snap-restore-1", storage_dir=state, lease_duration=3.0, renew_deadline=2.0,
                              retry_period=0.3)
    task = asyncio.get_running_loop().create_task(manager.run())
    try:
        await bound_claim(store, "data-claim", "16Mi")
        disk = local_volumes.claim_disk(state / "pvcs", NS, "data-claim")
        overwrite(disk, b"before snapshot\n", 16 * 2**20)
        await create_vm(store, "vm1", "data-claim")
        await store.create(SNAPSHOTS, {
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "snap1", "namespace": NS},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm1"}}})

        async def ready():
            snap = await store.get(SNAPSHOTS, NS, "snap1")
            return (snap.get("status") or {}).get("readyToUse")
        await wait_until(ready, timeout=30)
        overwrite(disk, b"after snapshot!\n", 16 * 2**20)
        restore = await create_restore(store, "r1", "vm1")
        await complete(store, "r1")
        claim = f"restore-{restore['metadata']['uid']}-data"
        vm = await store.get(VMS, NS, "vm1")
        assert vm["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"] == claim
        assert (await store.get(PVCS, NS, claim))["status"]["phase"] == "Bound"
        assert read_head(local_volumes.claim_disk(state / "pvcs", NS, claim), tmp_path, 16) == b"before snapshot\n"
        assert read_head(disk, tmp_path, 16) == b"after snapshot!\n"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
