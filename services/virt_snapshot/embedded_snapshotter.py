"""The embedded VolumeSnapshotter (skeleton; filled in next)."""

from __future__ import annotations

from pathlib import Path

from services.virt_snapshot.handler_client import HandlerClient
from services.virt_snapshot.volume_snapshotter import (
    CopyStatus,
    SnapshotRequest,
    SnapshotterError,
    volume_snapshot_reference,
)
from shared.api.storage import TypedLocalObjectReference


class EmbeddedSnapshotter:
    """qcow2 copies of claims under ``copies_dir``."""

    def __init__(self, *, pvc_root: Path, copies_dir: Path, handlers: HandlerClient | None) -> None:
        self.pvc_root = pvc_root
        self.copies_dir = copies_dir
        self.handlers = handlers

    async def begin(self, request: SnapshotRequest) -> str:
        """Not yet."""
        raise SnapshotterError("not implemented", retryable=False)

    async def poll(self, request: SnapshotRequest) -> list[CopyStatus]:
        """Not yet."""
        return []

    async def cancel(self, request: SnapshotRequest) -> None:
        """Not yet."""

    async def delete(self, namespace: str, volume_snapshot_names: list[str]) -> None:
        """Not yet."""

    def claim_data_source(self, volume_snapshot_name: str) -> TypedLocalObjectReference:
        """``{snapshot.storage.k8s.io, VolumeSnapshot, name}``."""
        return volume_snapshot_reference(volume_snapshot_name)
