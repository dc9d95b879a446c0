"""The VirtualMachineSnapshotContent controller: freeze, copies, thaw, readiness, cleanup.

Steps (:func:`content_decision.content_step`, KubeVirt updateVMSnapshotContent):

- Begin: when the snapshot says ``GuestAgent`` (:func:`content_decision.begin_action`), ``Freeze`` on the
  VMI's node with ``unfreeze_timeout_seconds`` = the snapshot's failureDeadline (300 when none)
  — the handler thaws by itself at that time whatever happens here; then
  ``VolumeSnapshotter.begin`` (fixes the point in time) only once that Freeze answered ok — a
  refused or unanswered Freeze is retried every ``BEGIN_RETRY`` s and the copy never starts
  unfrozen; at the failureDeadline the snapshot fails and Abandon thaws; the content's ``creationTime`` is written
  (event ``SuccessfulVolumeSnapshotCreate`` per copy); then ``Unfreeze``.
- Poll: the copies' states into ``volumeSnapshotStatus``/``readyToUse``/``error``.
- Abandon (snapshot gone or failed): ``Unfreeze`` (always), abort unfinished copies.
- Cleanup (content deleted): ``Unfreeze`` if still frozen for this snapshot, abort, delete the
  copy files, then drop the content finalizer.
- Every step begins by thawing a guest left frozen by this snapshot once its point in time is
  fixed (a leader killed between freeze and thaw: the new one thaws on its first reconcile).

Spans ``freeze``, ``begin copies``, ``thaw`` under the reconcile span (the snapshot's trace).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from msgspec.structs import replace

from services.virt_snapshot.content_decision import (
    BeginAction,
    ContentStep,
    begin_action,
    compute_begin_error,
    compute_created_status,
    compute_poll_delay,
    compute_polled_status,
    compute_request,
    content_step,
    needs_freeze,
)
from services.virt_snapshot.handler_client import HandlerUnavailable
from services.virt_snapshot.indications import SourceState, compute_source_state
from services.virt_snapshot.parts import SnapshotParts
from services.virt_snapshot.snapshot_decision import failure_deadline_seconds, is_terminating
from services.virt_snapshot.volume_snapshotter import SnapshotterError
from services.virt_snapshot.writes import Writer, as_body
from shared import events, tracing
from shared.api.snapshot import VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.meta import has_finalizer, with_finalizer
from shared.api.snapshot_vocabulary import DEFAULT_FAILURE_DEADLINE_SECONDS, SNAPSHOT_CONTENT_FINALIZER
from shared.api.vocabulary import format_time, object_key
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

SERVICE = "virt-snapshot"
VOLUME_SNAPSHOT_CREATE_EVENT = "SuccessfulVolumeSnapshotCreate"
#: seconds between attempts after a failed freeze or begin (KubeVirt: 5 s)
BEGIN_RETRY = 5.0


class ContentController:
    """Reconciles VirtualMachineSnapshotContents (KubeVirt updateVMSnapshotContent)."""

    def __init__(self, parts: SnapshotParts) -> None:
        self.parts = parts
        self.writer = Writer(parts.store, parts.recorder)
        self.queue = WorkQueue(name="virt-snapshot-content")
        self._polls: dict[str, int] = {}  # content key -> looks at its unfinished copies so far
        parts.contents.add_handler(lambda old, new: self._enqueue(new or old))
        parts.snapshots.add_handler(lambda old, new: self._on_snapshot(new or old))

    def _enqueue(self, content: Any) -> None:
        if content is not None and content.metadata is not None:
            self.queue.add(object_key(content.metadata.namespace, content.metadata.name))

    def _on_snapshot(self, snap: VirtualMachineSnapshot | None) -> None:
        if snap is None or snap.metadata is None:
            return
        for content in self.parts.contents.items():
            if content.metadata is not None and content.metadata.namespace == snap.metadata.namespace \
                    and content.spec.virtual_machine_snapshot_name == snap.metadata.name:
                self._enqueue(content)

    def enqueue_all(self) -> None:
        """Queue every cached content."""
        for key in self.parts.contents.keys():
            self.queue.add(key)

    def _snapshot_of(self, content: VirtualMachineSnapshotContent) -> VirtualMachineSnapshot | None:
        meta = content.metadata
        name = content.spec.virtual_machine_snapshot_name
        if meta is None or not name:
            return None
        snap = self.parts.snapshots.get_by_name(meta.namespace, name)
        owners = [o.uid for o in meta.owner_references or [] if o.kind == "VirtualMachineSnapshot"]
        if snap is not None and owners and (snap.metadata is None or snap.metadata.uid not in owners):
            return None  # a newer snapshot of the same name
        return snap

    def traced_object(self, key: str) -> tuple[str, Mapping[str, Any], str | None] | None:
        """The span of a reconcile of ``key``: joined to its snapshot's trace."""
        content = self.parts.contents.get(key)
        snap = self._snapshot_of(content) if content is not None else None
        if content is None or snap is None:
            return None
        rv = content.metadata.resource_version if content.metadata else None
        return "reconcile VirtualMachineSnapshotContent", as_body(snap, "VirtualMachineSnapshot"), rv

    def _state(self, content: VirtualMachineSnapshotContent) -> SourceState | None:
        vm_copy = content.spec.source.virtual_machine
        ns = content.metadata.namespace if content.metadata else None
        name = vm_copy.metadata.name if vm_copy is not None and vm_copy.metadata is not None else None
        vm = self.parts.vms.get_by_name(ns, name) if name else None
        if vm is None:
            return None
        return compute_source_state(vm, self.parts.vmis.get_by_name(ns, name or ""), {})

    async def reconcile(self, key: str) -> None:
        """Reconcile the content ``key`` (see the module docstring)."""
        parts = self.parts
        content = parts.contents.get(key)
        if content is None or content.metadata is None:
            return
        snap = self._snapshot_of(content)
        now = parts.clock.now()
        terminating = snap is not None and is_terminating(snap, now)
        state = self._state(content)
        step = content_step(content, snap, terminating)
        request = compute_request(content, snap, state)
        ns = content.metadata.namespace or ""
        if step in (ContentStep.CLEANUP, ContentStep.ABANDON):
            await self._thaw(ns, snap, state, always=True)
            if not (content.status and content.status.ready_to_use):
                await parts.snapshotter.cancel(request)
            if step == ContentStep.CLEANUP:
                await parts.snapshotter.delete(ns, [v.volume_snapshot_name for v in request.volumes])
                await self.writer.write(parts.contents, content, _without_content_finalizer)
            return
        if step == ContentStep.BEGIN:
            assert snap is not None
            content = await self._begin(key, content, snap, state, request)
            if content is None or content.status is None or content.status.creation_time is None:
                return
            step = ContentStep.POLL
            await self._thaw(ns, snap, state, always=True)
        else:
            await self._thaw(ns, snap, state, always=False)
        if step == ContentStep.POLL:
            copies = await parts.snapshotter.poll(request)
            status = compute_polled_status(content, copies, format_time(now))
            if status != content.status:
                await self.writer.write(parts.contents, content, lambda c: replace(c, status=status),
                                        status_only=True)
            if not status.ready_to_use and status.error is None:
                polls = self._polls.get(key, 0) + 1
                self._polls[key] = polls
                self.queue.add_after(key, compute_poll_delay(polls))
            else:
                self._polls.pop(key, None)

    async def _begin(self, key: str, content: VirtualMachineSnapshotContent, snap: VirtualMachineSnapshot,
                     state: SourceState | None, request: Any) -> VirtualMachineSnapshotContent | None:
        parts = self.parts
        ns = content.metadata.namespace if content.metadata else ""
        now = format_time(parts.clock.now())
        try:
            if begin_action(snap, state) == BeginAction.FREEZE_THEN_COPY:
                assert state is not None
                await self._freeze(ns or "", snap, state)
            with tracing.child_span(SERVICE, "begin copies", attributes={"kubevirt.volumes": len(request.volumes)}):
                creation_time = await parts.snapshotter.begin(request)
        except (SnapshotterError, HandlerUnavailable) as err:
            message = getattr(err, "message", None) or str(err)
            status = compute_begin_error(content, message, now)
            if status != content.status:
                await self.writer.write(parts.contents, content, lambda c: replace(c, status=status),
                                        status_only=True)
            self.queue.add_after(key, BEGIN_RETRY)
            return None
        status = compute_created_status(content, creation_time)
        stored = await self.writer.write(parts.contents, content, lambda c: replace(c, status=status),
                                         status_only=True)
        for volume in request.volumes:
            await self.writer.record(content, "VirtualMachineSnapshotContent", "Normal", VOLUME_SNAPSHOT_CREATE_EVENT,
                                     f"Successfully created VolumeSnapshot {volume.volume_snapshot_name}")
        return stored

    async def _freeze(self, namespace: str, snap: VirtualMachineSnapshot, state: SourceState) -> None:
        assert state.node and state.vmi_name
        if self.parts.handlers is None:
            raise SnapshotterError("no bus to reach the VMI's node", retryable=False)
        timeout = int(failure_deadline_seconds(snap)) or DEFAULT_FAILURE_DEADLINE_SECONDS
        with tracing.child_span(SERVICE, "freeze", attributes={"kubevirt.node": state.node}):
            result = await self.parts.handlers.send(state.node, events.Freeze(
                namespace=namespace, name=state.vmi_name, uid=state.vmi_uid or "",
                unfreeze_timeout_seconds=timeout))
        if not result.ok:
            raise SnapshotterError(result.message or f"freeze refused: {result.reason}")

    async def _thaw(self, namespace: str, snap: VirtualMachineSnapshot | None, state: SourceState | None, *,
                    always: bool) -> None:
        """Unfreeze when this snapshot froze (or may have frozen) the guest: ``always`` sends it
        whenever the snapshot asked for a freeze and the VMI runs; else only when the VMI reports
        ``fsFreezeStatus: frozen``."""
        if state is None or not state.online or not state.node or not state.vmi_name or self.parts.handlers is None:
            return
        if snap is not None and not needs_freeze(snap):
            return
        if snap is None and not state.frozen:
            return
        if not always and not state.frozen:
            return
        with tracing.child_span(SERVICE, "thaw", attributes={"kubevirt.node": state.node}):
            try:
                result = await self.parts.handlers.send(state.node, events.Unfreeze(
                    namespace=namespace, name=state.vmi_name, uid=state.vmi_uid or ""))
            except HandlerUnavailable as err:
                log.warning("unfreeze of %s/%s: %s", namespace, state.vmi_name, err)
                return
        if not result.ok:
            log.warning("unfreeze of %s/%s refused: %s", namespace, state.vmi_name, result.message)


def _without_content_finalizer(content: VirtualMachineSnapshotContent) -> VirtualMachineSnapshotContent | None:
    """``content`` without its protection finalizer (None when it has none: nothing to write)."""
    if not has_finalizer(content.metadata, SNAPSHOT_CONTENT_FINALIZER):
        return None
    return replace(content, metadata=with_finalizer(content.metadata, SNAPSHOT_CONTENT_FINALIZER, False))
