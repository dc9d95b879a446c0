"""The VirtualMachineSnapshotContent controller (skeleton; filled in next)."""

from __future__ import annotations

from services.virt_snapshot.parts import SnapshotParts
from shared.workqueue import WorkQueue


class ContentController:
    """Reconciles VirtualMachineSnapshotContents (KubeVirt's updateVMSnapshotContent)."""

    def __init__(self, parts: SnapshotParts) -> None:
        self.parts = parts
        self.queue = WorkQueue()

    def enqueue_all(self) -> None:
        """Queue every cached content."""
        for key in self.parts.contents.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        """Reconcile the content ``key``."""
