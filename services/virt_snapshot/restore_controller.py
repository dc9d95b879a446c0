"""The restore controller: a VirtualMachineRestore rebuilds its target VM from a snapshot.

KubeVirt's VMRestoreController (pkg/storage/snapshot/restore.go, updateVMRestore) step by step;
each reconcile does the first step not done yet and writes the restore's status, so every step
is idempotent and a new leader continues from the store:

1. status initialised (Progressing "Initializing VirtualMachineRestore", ``complete: false``);
2. finalizer ``snapshot.kubevirt.io/vmrestore-protection`` and an owner reference to an existing
   target;
3. target readiness (:func:`restore_decision.compute_target_readiness`): wait, stop the target
   (``runStrategy: Halted``) or fail, with Warning ``RestoreTargetNotReady``;
4. the snapshot and its content must be ready; an existing target that is not the snapshot's
   source is refused;
5. lock: VM ``status.restoreInProgress = <restore>``;
6. ``status.restores`` (claim names per volumeRestorePolicy), then each claim created with the
   copy as ``dataSource`` (InPlace: the old claim deleted first), waiting until all are Bound —
   through the VolumeSnapshotter's claim half
   (:class:`~services.virt_snapshot.volume_snapshotter.RestoredClaims`): claims in the store bound
   by the local provisioner (embedded; their changes arrive as PVC informer events) or claims in
   the Kubernetes cluster provisioned by the CSI driver (CSI; looked at again every
   ``claim_poll_interval`` seconds while not Bound);
7. the target VM written (created, or its spec replaced) with ``restore.kubevirt.io/lastRestoreUID``;
8. lock cleared, ``restoreTime``, ``complete: true``, Ready, Event ``VirtualMachineRestoreComplete``.

Errors of a step go to the conditions (Progressing/Ready False with the message, Warning
``VirtualMachineRestoreError``) and are retried with backoff. Each reconcile runs in a span of the
restore's trace (``reconcile VirtualMachineRestore``, opened by the manager from
:meth:`RestoreController.traced_object`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from services.virt_snapshot import restore_decision as rd
from services.virt_snapshot import restore_volumes as rv
from services.virt_snapshot.restore_writes import RestoreWriter, restore_body, vm_body
from services.virt_snapshot.store_claims import StoreClaims
from services.virt_snapshot.volume_snapshotter import RestoredClaims, SnapshotterError
from shared.admission.vmi_defaults import compute_stable_firmware_uuid
from shared.api.decoding import encode_object
from shared.api.meta import has_finalizer
from shared.api.snapshot import (
    VirtualMachineRestore,
    VirtualMachineRestoreStatus,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotContent,
    VolumeRestore,
)
from shared.api.snapshot_vocabulary import (
    RESTORE_FINALIZER,
    RESTORE_NAME_ANNOTATION,
    RESTORE_OWNED_BY_VM_LABEL,
    VolumeOwnershipPolicy,
    VolumeRestorePolicy,
)
from shared.api.storage import ClaimPhase, PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import EventType, format_time, object_key
from shared.clock import Clock, SystemClock
from shared.events_recorder import EventRecorder
from shared.informer import Informer, key_of
from shared.sync_error import SyncError
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

SERVICE = "virt-snapshot"
SPAN_NAME = "reconcile VirtualMachineRestore"
_replace = msgspec.structs.replace


class RestoreController:
    """Reconciles VirtualMachineRestores (one key per restore).

    Args:
        store: ObjectStore.
        restores, snapshots, contents, vms, vmis, pvcs: typed informers (started by the manager).
        recorder: EventRecorder (component ``virt-snapshot``).
        clock: wall clock (the WaitGracePeriod deadline).
        claims: where restored claims are made and read (the VolumeSnapshotter); default: claims
            in ``store`` read through ``pvcs`` (:class:`StoreClaims`, the embedded installation's).
    """

    def __init__(self, store: Any, *, restores: Informer[VirtualMachineRestore],
                 snapshots: Informer[VirtualMachineSnapshot], contents: Informer[VirtualMachineSnapshotContent],
                 vms: Informer[VirtualMachine], vmis: Informer[VirtualMachineInstance],
                 pvcs: Informer[PersistentVolumeClaim], recorder: EventRecorder, clock: Clock | None = None,
                 claims: RestoredClaims | None = None) -> None:
        self.restores = restores
        self.snapshots = snapshots
        self.contents = contents
        self.vms = vms
        self.vmis = vmis
        self.pvcs = pvcs
        self.recorder = recorder
        self.clock = clock or SystemClock()
        self.claims: RestoredClaims = claims if claims is not None else StoreClaims(store, pvcs)
        self.writer = RestoreWriter(store, restores, vms, pvcs)
        self.queue = WorkQueue(name="virt-snapshot-restore")
        restores.add_handler(lambda old, new: self.queue.add(key_of(new if new is not None else old)))
        vms.add_handler(self._on_target)
        vmis.add_handler(self._on_target)
        pvcs.add_handler(self._on_claim)
        snapshots.add_handler(self._on_snapshot)

    # -- event handlers: which restores to look at again ------------------------------------------
    def _restores_where(self, namespace: str | None, match: Callable[[VirtualMachineRestore], bool]) -> None:
        for restore in self.restores.items():
            if restore.metadata is not None and restore.metadata.namespace == namespace and match(restore):
                self.queue.add(key_of(restore))

    def _on_target(self, old: Any, new: Any) -> None:
        obj = new if new is not None else old
        meta = obj.metadata
        if meta is not None:
            self._restores_where(meta.namespace, lambda r: r.spec.target.name == meta.name)

    def _on_claim(self, old: PersistentVolumeClaim | None, new: PersistentVolumeClaim | None) -> None:
        obj = new if new is not None else old
        meta = obj.metadata if obj is not None else None
        if meta is None:
            return
        owner = (meta.annotations or {}).get(RESTORE_NAME_ANNOTATION)
        if owner:
            self.queue.add(object_key(meta.namespace, owner))
        self._restores_where(meta.namespace, lambda r: any(
            v.persistent_volume_claim_name == meta.name for v in (r.status.restores if r.status else None) or []))

    def _on_snapshot(self, old: VirtualMachineSnapshot | None, new: VirtualMachineSnapshot | None) -> None:
        obj = new if new is not None else old
        meta = obj.metadata if obj is not None else None
        if meta is not None:
            self._restores_where(meta.namespace, lambda r: r.spec.virtual_machine_snapshot_name == meta.name)

    def enqueue_all(self) -> None:
        """Queue every cached restore (a new leader's first pass)."""
        for key in self.restores.keys():
            self.queue.add(key)

    # -- reconcile ----------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, parts: Any) -> RestoreController:
        """Built on the manager's :class:`services.virt_snapshot.parts.SnapshotParts`."""
        return cls(parts.store, restores=parts.restores, snapshots=parts.snapshots, contents=parts.contents,
                   vms=parts.vms, vmis=parts.vmis, pvcs=parts.pvcs, recorder=parts.recorder, clock=parts.clock,
                   claims=parts.snapshotter)

    def traced_object(self, key: str) -> tuple[str, Mapping[str, Any], str | None] | None:
        """The span of a reconcile of ``key`` (the manager opens it): joined to the restore's trace."""
        restore = self.restores.get(key)
        return (SPAN_NAME, restore_body(restore), None) if restore is not None else None

    async def reconcile(self, key: str) -> None:
        """One step of restore ``key``. Raises Conflict (requeued) or a retryable SyncError after
        recording a step's error. Run by the manager inside the span of :meth:`traced_object`."""
        restore = self.restores.get(key)
        if restore is None:
            return
        await self._reconcile(key, restore)

    def _status(self, restore: VirtualMachineRestore) -> VirtualMachineRestoreStatus:
        return restore.status or VirtualMachineRestoreStatus()

    async def _set_conditions(self, restore: VirtualMachineRestore, *, progressing: bool, ready: bool,
                              reason: str, failed: bool = False, **fields: Any) -> VirtualMachineRestore | None:
        status = self._status(restore)
        conditions = rd.progress_conditions(status.conditions, progressing=progressing, ready=ready, reason=reason,
                                            now=self.clock.now(), failed=failed)
        return await self.writer.write_status(restore, _replace(status, conditions=conditions, **fields))

    async def _error(self, restore: VirtualMachineRestore, message: str, *, failed: bool) -> None:
        """KubeVirt's doUpdateErrorWithFailure: conditions carry the message, Warning Event."""
        await self._set_conditions(restore, progressing=False, ready=False, reason=message, failed=failed)
        reason = rd.RESTORE_FAILED_EVENT if failed else rd.RESTORE_ERROR_EVENT
        await self.recorder.record(restore_body(restore), EventType.WARNING, reason,
                                   rd.error_event_message(message, failed=failed))

    async def _reconcile(self, key: str, restore: VirtualMachineRestore) -> None:
        if restore.status is None:
            await self._set_conditions(restore, progressing=True, ready=False, reason=rd.INITIALIZING,
                                       complete=False)
            return
        meta = restore.metadata
        namespace = meta.namespace if meta is not None else None
        if restore.spec.target.kind != "VirtualMachine":
            await self._error(restore, f"unknown source {restore.spec.target.kind}/{restore.spec.target.name}",
                              failed=False)
            return
        target = self.vms.get_by_name(namespace, restore.spec.target.name)
        if meta is not None and meta.deletion_timestamp:
            await self._delete(restore, target)
            return
        if not rd.is_progressing(restore):
            return
        owner = rv.owner_reference(target.metadata.name or "", target.metadata.uid or "") \
            if target is not None and target.metadata is not None else None
        protected = await self.writer.own_and_protect(restore, owner)
        if protected is None:
            return
        restore = protected
        try:
            await self._progress(key, restore, namespace, target)
        except rd.RestoreError as err:
            await self._error(restore, err.message, failed=False)
            raise SyncError(err.message, reason=rd.RESTORE_ERROR_EVENT) from err

    async def _progress(self, key: str, restore: VirtualMachineRestore, namespace: str | None,
                        target: VirtualMachine | None) -> None:
        name = (restore.metadata.name if restore.metadata else None) or ""
        vmi = self.vmis.get_by_name(namespace, restore.spec.target.name)
        readiness = rd.compute_target_readiness(restore, target_exists=target is not None, vmi=vmi,
                                                now=self.clock.now())
        if readiness.step != rd.ReadinessStep.READY:
            await self._not_ready(key, restore, target, readiness)
            return
        snapshot = self.snapshots.get_by_name(namespace, restore.spec.virtual_machine_snapshot_name)
        content_name = rd.check_snapshot(namespace or "", restore.spec.virtual_machine_snapshot_name, snapshot)
        content = self.contents.get_by_name(namespace, content_name)
        rd.check_content(namespace or "", content_name, content)
        assert snapshot is not None and content is not None  # checked above
        target_annotations = target.metadata.annotations if target is not None and target.metadata else None
        restored = target is not None and rv.has_last_restore(restore, target_annotations)
        if target is not None and not restored:
            if rd.source_and_target_differ(target.metadata.uid if target.metadata else None, snapshot):
                raise rd.RestoreError(rd.ERROR_RESTORE_TO_EXISTING_TARGET)
            holder = target.status.restore_in_progress if target.status is not None else None
            if holder and holder != name:
                raise rd.RestoreError(rd.lock_held_message(holder))
            if not holder:
                target = await self.writer.set_restore_in_progress(target, name)
                if target is None:
                    return
        if await self._reconcile_claims(key, restore, content, target):
            return
        if not restored and await self._reconcile_target(restore, content, target):
            await self._set_conditions(restore, progressing=True, ready=False, reason=rd.UPDATING_TARGET)
            return
        await self._finish(restore, namespace)

    async def _not_ready(self, key: str, restore: VirtualMachineRestore, target: VirtualMachine | None,
                         readiness: rd.Readiness) -> None:
        if readiness.step == rd.ReadinessStep.FAIL:
            await self._error(restore, readiness.reason, failed=True)
            return
        stopping = readiness.step == rd.ReadinessStep.STOP
        if not stopping or (target is not None and rd.stop_needed(target)):
            await self.recorder.record(restore_body(restore), EventType.WARNING, rd.RESTORE_VM_NOT_READY_EVENT,
                                       readiness.event_message)
        await self._set_conditions(restore, progressing=False, ready=False, reason=readiness.reason)
        if stopping and target is not None and rd.stop_needed(target):
            await self.writer.stop_vm(target)
        if readiness.recheck_after is not None:
            self.queue.add_after(key, readiness.recheck_after)

    async def _reconcile_claims(self, key: str, restore: VirtualMachineRestore,
                                content: VirtualMachineSnapshotContent, target: VirtualMachine | None) -> bool:
        """KubeVirt's reconcileVolumeRestores; True while claims are being made (status written;
        ``key`` queued again after ``claims.claim_poll_interval`` when that is set, as claims on a
        cluster send no informer events). A :class:`SnapshotterError` of the claim operations
        becomes a RestoreError."""
        namespace = restore.metadata.namespace if restore.metadata else None
        restores = rv.compute_volume_restores(restore, content)
        status = self._status(restore)
        if (status.restores or []) != restores:
            await self._set_conditions(restore, progressing=True, ready=False, reason=rd.CREATING_PVCS,
                                       restores=restores)
            return True
        try:
            busy = await self._make_claims(restore, content, target, namespace or "", restores)
        except SnapshotterError as err:
            raise rd.RestoreError(err.message) from err
        if busy:
            await self._set_conditions(restore, progressing=True, ready=False, reason=rd.CREATING_PVCS)
            if self.claims.claim_poll_interval is not None:
                self.queue.add_after(key, self.claims.claim_poll_interval)
        return busy

    async def _make_claims(self, restore: VirtualMachineRestore, content: VirtualMachineSnapshotContent,
                           target: VirtualMachine | None, namespace: str, restores: list[VolumeRestore]) -> bool:
        """Create missing claims, delete InPlace ones not made by this restore; True while any
        claim is not Bound. Raises RestoreError for a claim in another phase (Lost)."""
        source_vm = content.spec.source.virtual_machine
        source_meta = source_vm.metadata if source_vm is not None else None
        busy = False
        for volume in restores:
            claim = await self.claims.read_claim(namespace, volume.persistent_volume_claim_name)
            if claim is None:
                backup = next(b for b in content.spec.volume_backups or [] if b.volume_name == volume.volume_name)
                owner = (target.metadata.name or "", target.metadata.uid or "") \
                    if target is not None and target.metadata is not None else None
                body = rv.compute_restore_claim(
                    restore, backup, volume.persistent_volume_claim_name,
                    data_source=encode_object(self.claims.claim_data_source(volume.volume_snapshot_name)),
                    source_vm_name=(source_meta.name if source_meta else None) or "",
                    source_vm_namespace=(source_meta.namespace if source_meta else None) or namespace,
                    source_vm_uid=source_meta.uid if source_meta else None, target=owner)
                await self.claims.create_claim(body)
                busy = True
            elif restore.spec.volume_restore_policy == VolumeRestorePolicy.IN_PLACE and not rv.has_last_restore(
                    restore, dict(claim.annotations)):
                await self.claims.delete_claim(namespace, volume.persistent_volume_claim_name)
                busy = True
            elif claim.phase in (None, "", ClaimPhase.PENDING):
                busy = True
            elif claim.phase != ClaimPhase.BOUND:
                raise rd.RestoreError(f'PVC {namespace}/{volume.persistent_volume_claim_name} in status '
                                      f'"{claim.phase}"')
        return busy

    async def _reconcile_target(self, restore: VirtualMachineRestore, content: VirtualMachineSnapshotContent,
                                target: VirtualMachine | None) -> bool:
        """Write the restored VM (create or CAS-update) and adopt its claims; True when written."""
        source_vm = content.spec.source.virtual_machine
        if source_vm is None:
            raise rd.RestoreError("unexpected snapshot source")
        body = rv.compute_restored_vm(restore, encode_object(source_vm), vm_body(target) if target else None,
                                      self._status(restore).restores or [],
                                      compute_stable_firmware_uuid(restore.spec.target.name))
        written = await self.writer.write_vm(target, body)
        if written is None or written.metadata is None:
            return True
        if restore.spec.volume_ownership_policy != VolumeOwnershipPolicy.NONE:
            owner = rv.owner_reference(written.metadata.name or "", written.metadata.uid or "")
            name = restore.metadata.name if restore.metadata else None
            for volume in self._status(restore).restores or []:
                pvc = self.pvcs.get_by_name(written.metadata.namespace, volume.persistent_volume_claim_name)
                annotations = (pvc.metadata.annotations if pvc is not None and pvc.metadata else None) or {}
                if pvc is not None and pvc.metadata is not None and not pvc.metadata.owner_references \
                        and annotations.get(RESTORE_OWNED_BY_VM_LABEL) == name:
                    await self.writer.adopt_claim(pvc, owner)
        return True

    async def _finish(self, restore: VirtualMachineRestore, namespace: str | None) -> None:
        name = (restore.metadata.name if restore.metadata else None) or ""
        target = self.vms.get_by_name(namespace, restore.spec.target.name)
        if target is None:
            raise rd.RestoreError("At this point target should exist")
        if target.status is not None and target.status.restore_in_progress == name:
            await self.writer.set_restore_in_progress(target, None)
        await self.recorder.record(restore_body(restore), EventType.NORMAL, rd.RESTORE_COMPLETE_EVENT,
                                   rd.complete_message(name))
        await self._set_conditions(restore, progressing=False, ready=True, reason=rd.OPERATION_COMPLETE,
                                   complete=True, restore_time=format_time(self.clock.now()))

    async def _delete(self, restore: VirtualMachineRestore, target: VirtualMachine | None) -> None:
        """KubeVirt's handleVMRestoreDeletion: unlock the target, note it, drop the finalizer."""
        if not has_finalizer(restore.metadata, RESTORE_FINALIZER):
            return
        name = restore.metadata.name if restore.metadata else None
        if target is not None and target.status is not None and target.status.restore_in_progress == name:
            await self.writer.set_restore_in_progress(target, None)
        written = await self._set_conditions(restore, progressing=False, ready=False, reason=rd.DELETING)
        if written is restore:
            await self.writer.remove_finalizer(restore)
