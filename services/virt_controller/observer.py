"""What virt-controller reports about VMIs as they change: metrics and Events.

Owns: the informer handler that, on the leading replica only, turns each VMI phase change into
the phase-transition histograms (:func:`shared.metrics.observe_phase_transition`) and a
Kubernetes Event (:func:`compute_vmi_transition_events`), and that makes the leader's VMI cache
the source of ``kubevirt_vmi_phase_count``. Events are recorded on transitions only: the first
listing of an existing VMI (old is None) and changes that keep the phase record nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import ConditionStatus, ConditionType, Phase, Reason
from shared.events_recorder import NORMAL, WARNING, EventRecorder
from shared.metrics import observe_phase_transition, register_phase_source

#: VMI phase -> (type, reason, message template) of the Event recorded on entering it
#: (reasons as KubeVirt's controllers and virt-handler record them).
PHASE_EVENTS: dict[str, tuple[str, str, str]] = {
    Phase.SCHEDULED: (NORMAL, "Scheduled", "Successfully assigned {namespace}/{name} to {node}"),
    Phase.RUNNING: (NORMAL, "Started", "VirtualMachineInstance started."),
    Phase.SUCCEEDED: (NORMAL, "Stopped", "The VirtualMachineInstance was shut down."),
    Phase.FAILED: (WARNING, "Stopped", "The VirtualMachineInstance crashed."),
    Phase.UNKNOWN: (WARNING, "NodeNotReady", "The node {node} of the VirtualMachineInstance stopped reporting."),
}
#: the Event of a VMI failed because its node was lost (KubeVirt's node controller records it)
NODE_LOST_EVENT = (NORMAL, Reason.NODE_UNRESPONSIVE,
                   "virt-handler on node {node} is not responsive, marking VMI as failed")


def _pod_scheduled(status: Any) -> object:
    for cond in (status.conditions if status is not None else None) or ():
        if cond.type == ConditionType.POD_SCHEDULED:
            return cond
    return None


def _is_same_watched_state(old: VirtualMachineInstance, new: VirtualMachineInstance) -> bool:
    """Whether what the Events and histograms depend on is unchanged: phase, deletion started,
    the PodScheduled condition (cheapest comparisons first)."""
    old_status, new_status = old.status, new.status
    if (old_status.phase if old_status is not None else None) != \
            (new_status.phase if new_status is not None else None):
        return False
    if bool(old.metadata is not None and old.metadata.deletion_timestamp) != \
            bool(new.metadata is not None and new.metadata.deletion_timestamp):
        return False
    return _pod_scheduled(old_status) == _pod_scheduled(new_status)


def _metric_view(vmi: VirtualMachineInstance) -> dict[str, Any]:
    """The parts of a VMI ``kubevirt_vmi_phase_count`` reads, JSON-ready."""
    meta, status = vmi.metadata, vmi.status
    return {"metadata": {"annotations": (meta.annotations if meta is not None else None) or {},
                         "labels": (meta.labels if meta is not None else None) or {}},
            "status": {"phase": status.phase, "nodeName": status.node_name} if status is not None else {}}


def _transition_view(vmi: VirtualMachineInstance) -> dict[str, Any]:
    """The parts of a VMI the transition histograms, Events and their involvedObject read
    (kind, apiVersion, metadata, status phase/nodeName/conditions/phaseTransitionTimestamps),
    JSON-ready: a fraction of the cost of converting the whole object."""
    view: dict[str, Any] = {}
    if vmi.api_version is not None:
        view["apiVersion"] = vmi.api_version
    if vmi.kind is not None:
        view["kind"] = vmi.kind
    if vmi.metadata is not None:
        view["metadata"] = msgspec.to_builtins(vmi.metadata)
    status = vmi.status
    if status is not None:
        view["status"] = {"phase": status.phase, "nodeName": status.node_name, "reason": status.reason,
                          "conditions": msgspec.to_builtins(status.conditions),
                          "phaseTransitionTimestamps": msgspec.to_builtins(status.phase_transition_timestamps)}
    return view


def _unschedulable_message(vmi: dict[str, Any] | None) -> str | None:
    for cond in ((vmi or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ConditionType.POD_SCHEDULED and cond.get("status") == ConditionStatus.FALSE \
                and cond.get("reason") == Reason.UNSCHEDULABLE:
            return str(cond.get("message") or "0 nodes are available")
    return None


def compute_vmi_transition_events(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) a VMI change from ``old`` to ``new`` deserves: one per
    phase entered (:data:`PHASE_EVENTS`; :data:`NODE_LOST_EVENT` for ``Failed`` with reason
    ``NodeUnresponsive``), ``ShuttingDown`` when deletion starts, a Warning
    ``FailedScheduling`` when the scheduler's Unschedulable condition appears or changes. Nothing
    for an object first seen (old None) or deleted (new None)."""
    if old is None or new is None:
        return []
    events: list[tuple[str, str, str]] = []
    meta = new.get("metadata") or {}
    status = new.get("status") or {}
    fields = {"namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
              "node": status.get("nodeName") or ""}
    unschedulable = _unschedulable_message(new)
    if unschedulable is not None and unschedulable != _unschedulable_message(old):
        events.append((WARNING, "FailedScheduling", unschedulable))
    if meta.get("deletionTimestamp") and not (old.get("metadata") or {}).get("deletionTimestamp"):
        events.append((NORMAL, "ShuttingDown", "Signaled Graceful Shutdown"))
    phase = status.get("phase") or ""
    if phase and phase != ((old.get("status") or {}).get("phase") or ""):
        spec = NODE_LOST_EVENT if phase == Phase.FAILED and status.get("reason") == Reason.NODE_UNRESPONSIVE \
            else PHASE_EVENTS.get(phase)
        if spec is not None:
            event_type, reason, template = spec
            events.append((event_type, reason, template.format(**fields)))
    return events


class VMIObserver:
    """Registers on the VMI informer; acts only while ``is_leader()`` is true.

    Args:
        vmis: the VMI informer (``add_handler``, ``items``).
        recorder: EventRecorder of virt-controller.
        is_leader: callable telling whether this replica leads now.
    """

    def __init__(self, vmis: Any, recorder: EventRecorder, is_leader: Callable[[], bool]) -> None:
        self.vmis = vmis
        self.recorder = recorder
        self.is_leader = is_leader
        self._pending: set[asyncio.Task[Any]] = set()
        vmis.add_handler(self._on_vmi)
        register_phase_source(self)

    def metric_vmis(self) -> Iterable[dict[str, Any]] | None:
        """The leader's cached VMIs (for ``kubevirt_vmi_phase_count``); None on standbys."""
        return [_metric_view(v) for v in self.vmis.items()] if self.is_leader() else None

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        if new is None or old is None or not self.is_leader():
            return  # nothing is recorded for a VMI first seen or deleted
        if _is_same_watched_state(old, new):
            return  # most updates (guest status, heartbeats): no Event, no histogram
        old_obj, new_obj = _transition_view(old), _transition_view(new)
        observe_phase_transition(old_obj, new_obj)
        for event_type, reason, message in compute_vmi_transition_events(old_obj, new_obj):
            self.record(new_obj, event_type, reason, message)

    def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record an Event without blocking the caller (informer handlers are synchronous)."""
        obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", **obj} \
            if "kind" not in obj else obj
        task = asyncio.get_running_loop().create_task(self.recorder.record(obj, event_type, reason, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for Events still being written (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
