"""The VirtualMachineSnapshot controller: carries out :func:`snapshot_decision.decide`.

Reads the snapshot, its source VM, the VM's VMI and the claims of the namespace from the caches;
writes (CAS, :mod:`services.virt_snapshot.writes`) the snapshot's finalizer and status, the VM's
lock (``status.snapshotInProgress`` and the source finalizer in one write), the content. Queued on
changes of snapshots, their contents, VMs, VMIs and claims of the same namespace. Every step is
idempotent: a new leader repeats what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from msgspec.structs import replace

from services.virt_snapshot.content_decision import compute_content
from services.virt_snapshot.handler_client import HandlerUnavailable
from services.virt_snapshot.indications import SourceState, compute_source_state
from services.virt_snapshot.parts import SnapshotParts
from services.virt_snapshot.snapshot_decision import decide
from services.virt_snapshot.writes import Writer, as_body
from shared import events
from shared.api.meta import has_finalizer, with_finalizer
from shared.api.snapshot import VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.snapshot_vocabulary import SNAPSHOT_FINALIZER, SNAPSHOT_SOURCE_FINALIZER, snapshot_content_name
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine, VirtualMachineStatus
from shared.api.vocabulary import object_key
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

CONTENT_CREATE_EVENT = "SuccessfulVirtualMachineSnapshotContentCreate"


def claims_of(parts: SnapshotParts, namespace: str) -> Mapping[str, PersistentVolumeClaim]:
    """The cached claims of ``namespace`` by name."""
    return {c.metadata.name: c for c in parts.pvcs.items()
            if c.metadata is not None and c.metadata.namespace == namespace and c.metadata.name}


def source_of(parts: SnapshotParts, snapshot: VirtualMachineSnapshot) -> tuple[VirtualMachine | None,
                                                                              SourceState | None]:
    """The snapshot's source VM (None: missing or not a VirtualMachine) and its SourceState."""
    ns = snapshot.metadata.namespace if snapshot.metadata else None
    source = snapshot.spec.source
    if source.kind != "VirtualMachine":
        return None, None
    vm = parts.vms.get_by_name(ns, source.name)
    if vm is None:
        return None, None
    vmi = parts.vmis.get_by_name(ns, source.name)
    return vm, compute_source_state(vm, vmi, claims_of(parts, ns or ""))


class SnapshotController:
    """Reconciles VirtualMachineSnapshots (KubeVirt updateVMSnapshot)."""

    def __init__(self, parts: SnapshotParts) -> None:
        self.parts = parts
        self.writer = Writer(parts.store, parts.recorder)
        self.queue = WorkQueue(name="virt-snapshot-snapshot")
        parts.snapshots.add_handler(lambda old, new: self._enqueue(new or old))
        parts.contents.add_handler(self._on_content)
        parts.vms.add_handler(lambda old, new: self._enqueue_for_vm(new or old))
        parts.vmis.add_handler(lambda old, new: self._enqueue_for_vm(new or old))
        parts.pvcs.add_handler(lambda old, new: self._enqueue_namespace(new or old))

    def _enqueue(self, snapshot: Any) -> None:
        if snapshot is not None and snapshot.metadata is not None:
            self.queue.add(object_key(snapshot.metadata.namespace, snapshot.metadata.name))

    def _on_content(self, old: VirtualMachineSnapshotContent | None,
                    new: VirtualMachineSnapshotContent | None) -> None:
        content = new or old
        if content is not None and content.metadata is not None and content.spec.virtual_machine_snapshot_name:
            self.queue.add(object_key(content.metadata.namespace, content.spec.virtual_machine_snapshot_name))

    def _enqueue_for_vm(self, obj: Any) -> None:
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return
        for snap in self.parts.snapshots.items():
            if snap.metadata is not None and snap.metadata.namespace == meta.namespace \
                    and snap.spec.source.name == meta.name:
                self._enqueue(snap)

    def _enqueue_namespace(self, obj: Any) -> None:
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return
        for snap in self.parts.snapshots.items():
            if snap.metadata is not None and snap.metadata.namespace == meta.namespace and (
                    snap.status is None or snap.status.phase in (None, "", "InProgress")):
                self._enqueue(snap)

    def enqueue_all(self) -> None:
        """Queue every cached snapshot."""
        for key in self.parts.snapshots.keys():
            self.queue.add(key)

    def traced_object(self, key: str) -> tuple[str, Mapping[str, Any], str | None] | None:
        """The span of a reconcile of ``key``: joined to the snapshot's trace."""
        snap = self.parts.snapshots.get(key)
        if snap is None:
            return None
        return "reconcile VirtualMachineSnapshot", as_body(snap, "VirtualMachineSnapshot"), None

    async def reconcile(self, key: str) -> None:
        """Reconcile the snapshot ``key`` (see the module docstring)."""
        parts = self.parts
        snap = parts.snapshots.get(key)
        if snap is None or snap.metadata is None:
            return
        ns, name = snap.metadata.namespace, snap.metadata.name or ""
        vm, state = source_of(parts, snap)
        content_name = (snap.status.virtual_machine_snapshot_content_name if snap.status else None) or \
            snapshot_content_name(snap.metadata.uid or "")
        content = parts.contents.get_by_name(ns, content_name)
        plan = decide(snap, vm, state, content, parts.clock.now())
        w = self.writer
        if plan.add_finalizer:
            stored = await w.write(parts.snapshots, snap, lambda s: _with_snapshot_finalizer(s, True))
            snap = stored or snap
        if plan.lock and vm is not None:
            await w.write(parts.vms, vm, lambda v: _locked(v, name), whole=True)
        if plan.create_content and vm is not None and state is not None:
            made = await w.create(parts.contents, compute_content(snap, vm, state, claims_of(parts, ns or "")),
                                  "VirtualMachineSnapshotContent")
            if made is not None and made.metadata is not None:
                await w.record(snap, "VirtualMachineSnapshot", "Normal", CONTENT_CREATE_EVENT,
                               f"Successfully created VirtualMachineSnapshotContent {made.metadata.name}")
        if plan.retain_content and content is not None:
            await w.write(parts.contents, content, lambda c: replace(c, metadata=replace(
                c.metadata, owner_references=None)) if c.metadata and c.metadata.owner_references else None)
        if plan.delete_content and content is not None:
            await w.delete(parts.contents, content)
        if plan.unlock and vm is not None:
            await w.write(parts.vms, vm, lambda v: _unlocked(v, name), whole=True)
        if plan.status is not None:
            status = plan.status
            stored = await w.write(parts.snapshots, snap, lambda s: replace(s, status=status), status_only=True)
            snap = stored or snap
        for event_type, reason, message in plan.events:
            await w.record(snap, "VirtualMachineSnapshot", event_type, reason, message)
        # after the status: a thaw may wait on a handler still stuck in the freeze that failed the
        # snapshot; if this process dies first, the handler's own unfreeze deadline thaws the guest
        if plan.unfreeze and state is not None and state.node and parts.handlers is not None:
            await self._unfreeze(ns or "", state)
        if plan.remove_finalizer:
            await w.write(parts.snapshots, snap, lambda s: _with_snapshot_finalizer(s, False))
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _unfreeze(self, namespace: str, state: SourceState) -> None:
        assert self.parts.handlers is not None and state.node and state.vmi_name
        try:
            await self.parts.handlers.send(state.node, events.Unfreeze(
                namespace=namespace, name=state.vmi_name, uid=state.vmi_uid or ""))
        except HandlerUnavailable as err:
            log.warning("unfreeze of %s/%s: %s", namespace, state.vmi_name, err)


def _with_snapshot_finalizer(snap: VirtualMachineSnapshot, present: bool) -> VirtualMachineSnapshot | None:
    if has_finalizer(snap.metadata, SNAPSHOT_FINALIZER) == present:
        return None
    return replace(snap, metadata=with_finalizer(snap.metadata, SNAPSHOT_FINALIZER, present))


def _locked(vm: VirtualMachine, snapshot_name: str) -> VirtualMachine | None:
    status = vm.status or VirtualMachineStatus()
    if status.snapshot_in_progress not in (None, snapshot_name) or status.restore_in_progress:
        return None  # taken meanwhile: the next reconcile reports it
    if status.snapshot_in_progress == snapshot_name and has_finalizer(vm.metadata, SNAPSHOT_SOURCE_FINALIZER):
        return None
    return replace(vm, metadata=with_finalizer(vm.metadata, SNAPSHOT_SOURCE_FINALIZER, True),
                   status=replace(status, snapshot_in_progress=snapshot_name))


def _unlocked(vm: VirtualMachine, snapshot_name: str) -> VirtualMachine | None:
    status = vm.status or VirtualMachineStatus()
    if status.snapshot_in_progress != snapshot_name:
        return None
    return replace(vm, metadata=with_finalizer(vm.metadata, SNAPSHOT_SOURCE_FINALIZER, False),
                   status=replace(status, snapshot_in_progress=None))
