"""The write edge of virt-migration: a decided :class:`MigrationAction` carried out on the store.

- the VMIM's status through its ``/status`` subresource, a compare-and-swap on the VMIM's
  resourceVersion (Conflict propagates: the worker requeues and the decision is made again on
  the fresh object);
- the VMI: a pure ``mutate(vmi) -> vmi | None`` of :mod:`services.virt_migration.vmi_writes`
  written by CAS; on Conflict the VMI is read again and ``mutate`` applied to it, so the
  handlers' concurrent writes are kept and a write never lands on a state it was not made for;
- the finalizer ``kubevirt.io/migrationJobFinalize`` removed by a CAS update of the VMIM;
- Events (best effort) after the writes they describe.

Every stored answer is assumed into the informer caches (read-your-writes), which is also how
the capacity count sees a transition before its watch event arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.api.decoding import encode_object
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migration_vocabulary import MIGRATION_FINALIZER
from shared.api.vmi import VirtualMachineInstance
from shared.errors import NotFound
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.mutating_write import mutate_and_write

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
VMIMS = "virtualmachineinstancemigrations"
#: attempts of one VMI write before the Conflict is left to the worker's requeue
VMI_WRITE_ATTEMPTS = 5

Mutate = Callable[[VirtualMachineInstance], VirtualMachineInstance | None]


def as_body(obj: Any, kind: str) -> dict[str, Any]:
    """``obj`` (a Struct) as the store's dict with ``apiVersion``/``kind`` (for Events)."""
    return {"apiVersion": "kubevirt.io/v1", "kind": kind, **encode_object(obj)}


class MigrationWriter:
    """CAS writes of VMIMs and VMIs for virt-migration, folded back into the caches.

    Args:
        store: ObjectStore.
        vmims, vmis: the typed informers whose caches receive the stored answers.
        recorder: EventRecorder of component ``virt-migration``.
    """

    def __init__(self, store: Any, vmims: Informer[VirtualMachineInstanceMigration],
                 vmis: Informer[VirtualMachineInstance], recorder: EventRecorder) -> None:
        self.store = store
        self.vmims = vmims
        self.vmis = vmis
        self.recorder = recorder

    async def write_vmim_status(self, vmim: VirtualMachineInstanceMigration,
                                status: Any) -> VirtualMachineInstanceMigration | None:
        """Write ``status`` on ``vmim`` (CAS). Raises Conflict; None when the VMIM is gone."""
        body = encode_object(vmim)
        body["status"] = encode_object(status)
        try:
            stored = await self.store.update(VMIMS, body, subresource="status")
        except NotFound:
            self.vmims.assume_deleted(vmim)
            return None
        self.vmims.assume_written(vmim, stored)
        return self.vmims.decode(stored)

    async def remove_finalizer(self, vmim: VirtualMachineInstanceMigration) -> None:
        """Drop ``kubevirt.io/migrationJobFinalize`` from ``vmim`` (CAS; a VMIM being deleted then
        leaves the store). Raises Conflict."""
        body = encode_object(vmim)
        meta = body.setdefault("metadata", {})
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != MIGRATION_FINALIZER]
        if not meta["finalizers"]:
            del meta["finalizers"]
        try:
            stored = await self.store.update(VMIMS, body)
        except NotFound:
            stored = None
        self.vmims.assume_written(vmim, stored)

    async def write_vmi(self, vmi: VirtualMachineInstance, mutate: Mutate, *,
                        status_only: bool) -> VirtualMachineInstance | None:
        """Apply ``mutate`` to ``vmi`` and write it (``status_only``: through ``/status``; else the
        whole object: labels, annotations and status in one CAS). On Conflict the VMI is read
        again and ``mutate`` re-applied (at most :data:`VMI_WRITE_ATTEMPTS` times, then Conflict
        is raised). Returns the stored VMI, or None when ``mutate`` had nothing to write or the
        VMI is gone."""
        return await mutate_and_write(self.store, self.vmis, vmi, mutate, status_only=status_only, whole=True,
                                      attempts=VMI_WRITE_ATTEMPTS)

    async def create_vmim(self, vmim: VirtualMachineInstanceMigration) -> VirtualMachineInstanceMigration | None:
        """Create ``vmim`` (generateName allowed) and assume it; returns the stored VMIM."""
        stored = await self.store.create(VMIMS, as_body(vmim, "VirtualMachineInstanceMigration"))
        self.vmims.assume(stored)
        return self.vmims.decode(stored)

    async def delete_vmim(self, vmim: VirtualMachineInstanceMigration) -> None:
        """Delete ``vmim`` (precondition: its resourceVersion); a missing one is fine."""
        meta = vmim.metadata
        if meta is None or not meta.name:
            return
        try:
            result = await self.store.delete(VMIMS, meta.namespace, meta.name, precondition_rv=meta.resource_version)
        except NotFound:
            self.vmims.assume_deleted(vmim)
            return
        if (result.get("metadata") or {}).get("deletionTimestamp"):
            self.vmims.assume(result)
        else:
            self.vmims.assume_deleted(result)

    async def record(self, obj: Any, kind: str, event_type: str, reason: str, message: str) -> None:
        """An Event on ``obj`` (a VMIM or VMI Struct), best effort."""
        await self.recorder.record(as_body(obj, kind), event_type, reason, message)
