"""The embedded installation's restored claims: PersistentVolumeClaims in kubevirt-py's store.

The :class:`~services.virt_snapshot.volume_snapshotter.RestoredClaims` half of the embedded
VolumeSnapshotter. A claim created here is bound by the local provisioner
(:mod:`services.virt_snapshot.provisioner_controller`) from the copy named in its ``dataSource``;
its changes reach the restore controller as events of the PVC informer, so no polling is needed
(``claim_poll_interval`` None). Reads come from that informer's cache; a created claim is assumed
into it (read-your-writes). A claim is created with the trace annotations of the current span (the
restore's reconcile), so the provisioner's copy into it joins the restore's trace.
"""

from __future__ import annotations

from typing import Any

from services.virt_snapshot.volume_snapshotter import ClaimState, volume_snapshot_reference
from shared import tracing
from shared.api.storage import PersistentVolumeClaim, TypedLocalObjectReference
from shared.errors import AlreadyExists, NotFound
from shared.informer import Informer

PVCS = "persistentvolumeclaims"


class StoreClaims:
    """Restored claims in the store (see the module docstring).

    Args:
        store: ObjectStore.
        pvcs: the PVC informer (started by its owner) whose cache is read and receives created claims.
    """

    claim_poll_interval: float | None = None

    def __init__(self, store: Any, pvcs: Informer[PersistentVolumeClaim]) -> None:
        self.store = store
        self.pvcs = pvcs

    def claim_data_source(self, volume_snapshot_name: str) -> TypedLocalObjectReference:
        """``{snapshot.storage.k8s.io, VolumeSnapshot, name}`` (the provisioner copies that file)."""
        return volume_snapshot_reference(volume_snapshot_name)

    async def read_claim(self, namespace: str, name: str) -> ClaimState | None:
        """The cached claim's phase and annotations; None when the cache has no such claim."""
        pvc = self.pvcs.get_by_name(namespace, name)
        if pvc is None:
            return None
        return ClaimState(phase=pvc.status.phase if pvc.status is not None else None,
                          annotations=dict((pvc.metadata.annotations if pvc.metadata else None) or {}))

    async def create_claim(self, body: dict[str, Any]) -> None:
        """Create a restored claim (one that exists already is left as it is), stamped with the
        current span's trace."""
        body = {**body, "metadata": dict(body.get("metadata") or {})}
        tracing.apply_trace_annotations(body)
        try:
            stored = await self.store.create(PVCS, body)
        except AlreadyExists:
            return
        self.pvcs.assume(stored)

    async def delete_claim(self, namespace: str, name: str) -> None:
        """Delete a claim (InPlace); a claim already gone is fine."""
        try:
            await self.store.delete(PVCS, namespace, name)
        except NotFound:
            pass
