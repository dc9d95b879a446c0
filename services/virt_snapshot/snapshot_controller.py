"""The VirtualMachineSnapshot controller (skeleton; filled in next)."""

from __future__ import annotations

from services.virt_snapshot.parts import SnapshotParts
from shared.workqueue import WorkQueue


class SnapshotController:
    """Reconciles VirtualMachineSnapshots (KubeVirt's updateVMSnapshot)."""

    def __init__(self, parts: SnapshotParts) -> None:
        self.parts = parts
        self.queue = WorkQueue()

    def enqueue_all(self) -> None:
        """Queue every cached snapshot."""
        for key in self.parts.snapshots.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        """Reconcile the snapshot ``key``."""
