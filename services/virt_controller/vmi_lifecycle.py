"""What the VMI controller writes on a VMI (pure).

Embedded installation, no pods (our reading of ``kubevirt/kubevirt:
pkg/virt-controller/watch/vmi/lifecycle.go`` and ``pkg/virt-controller/watch/node``):

* unset/Pending, not being deleted -> ``Scheduling`` (finalizer
  ``kubevirt.io/foregroundDeleteVirtualMachine`` added; no Ready condition yet, so the VM's
  mirrored status does not change and costs no write);
  scheduler-bridge then sets ``nodeName`` and ``Scheduled``;
* unset/Pending/Scheduling and being deleted (never reached a node) -> ``Failed``;
* Scheduled/Running on a node whose heartbeat stopped -> ``Unknown`` (condition
  ``Ready=False/NodeUnresponsive``); if the VMI is also being deleted -> ``Failed`` with
  ``reason: NodeUnresponsive``, so deleting never waits on a dead node. virt-handler sets
  Running again when it comes back (it owns the status of VMIs on its node);
* final (Succeeded/Failed) -> the controller's finalizer is removed.

Who writes what: this controller the transitions above; scheduler-bridge ``nodeName``, label
``kubevirt.io/nodeName``, phase Scheduled and ``PodScheduled`` conditions; virt-handler
Running/Succeeded/Failed and the guest status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.virt_controller import phases
from services.virt_controller.conditions import with_condition
from services.virt_controller.vmi_template import VMI_CONTROLLER_FINALIZER
from shared.api.meta import Condition, ObjectMeta
from shared.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from shared.api.vocabulary import (
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
    format_micro_time,
    format_time,
    parse_time,
)

HEARTBEAT_ANNOTATION = "kubevirt.io/heartbeat"
DEFAULT_HEARTBEAT_TIMEOUT = 40.0
DELETED_BEFORE_START = "DeletedBeforeStart"
DELETED_WHILE_SCHEDULING = "DeletedWhileScheduling"


def _node_ready(node: dict[str, Any]) -> dict[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ConditionType.READY:
            return dict(cond)
    return None


def compute_last_heartbeat(node: dict[str, Any] | None) -> datetime | None:
    """Latest heartbeat of a Node (a JSON-ready ``v1`` Node): ``Ready`` condition
    ``lastHeartbeatTime`` or the ``kubevirt.io/heartbeat`` annotation, whichever is newer
    (None when neither)."""
    if not node:
        return None
    stamps: list[datetime] = []
    ready = _node_ready(node)
    for text in ((ready or {}).get("lastHeartbeatTime"),
                 ((node.get("metadata") or {}).get("annotations") or {}).get(HEARTBEAT_ANNOTATION)):
        try:
            parsed = parse_time(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            stamps.append(parsed)
    return max(stamps) if stamps else None


def is_node_responsive(node: dict[str, Any] | None, now: datetime,
                       timeout: float = DEFAULT_HEARTBEAT_TIMEOUT) -> bool:
    """The node exists, its ``Ready`` condition (if any) is not False/Unknown, and its last
    heartbeat is at most ``timeout`` seconds old."""
    if not node:
        return False
    ready = _node_ready(node)
    if ready is not None and ready.get("status") != ConditionStatus.TRUE:
        return False
    beat = compute_last_heartbeat(node)
    return beat is not None and (now - beat).total_seconds() <= timeout


def _with_finalizer(meta: ObjectMeta, add: bool) -> ObjectMeta:
    finalizers = [f for f in meta.finalizers or () if f != VMI_CONTROLLER_FINALIZER]
    if add:
        finalizers.append(VMI_CONTROLLER_FINALIZER)
    return msgspec.structs.replace(meta, finalizers=finalizers or None)


def compute_vmi_update(vmi: VirtualMachineInstance, *, node_responsive: bool,
                       now: datetime) -> VirtualMachineInstance | None:
    """The VMI as this controller wants it, or None when there is nothing to write.

    Args:
        vmi: the cached VMI.
        node_responsive: for a VMI with ``status.nodeName``, whether that node's heartbeat is
            current (see :func:`is_node_responsive`); ignored otherwise.
        now: current time; phase transitions are stamped with microseconds (so start-up
            latency can be measured from the objects), conditions with seconds.
    """
    precise = format_micro_time(now)
    phase = phases.phase_of(vmi)
    deleting = phases.is_marked_for_deletion(vmi)
    old_status = vmi.status or VirtualMachineInstanceStatus()
    status = old_status
    meta = vmi.metadata or ObjectMeta()
    new_meta = meta
    if phases.is_final(vmi):
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", Phase.PENDING, Phase.SCHEDULING) and deleting:
        reason = DELETED_BEFORE_START if phase != Phase.SCHEDULING else DELETED_WHILE_SCHEDULING
        status = msgspec.structs.replace(phases.with_phase(status, Phase.FAILED, precise), reason=reason)
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", Phase.PENDING):
        status = phases.with_phase(status, Phase.SCHEDULING, precise)
        new_meta = _with_finalizer(meta, add=True)
    elif phase in (Phase.SCHEDULED, Phase.RUNNING, Phase.UNKNOWN) and status.node_name \
            and not node_responsive:
        if deleting:
            status = msgspec.structs.replace(phases.with_phase(status, Phase.FAILED, precise),
                                             reason=Reason.NODE_UNRESPONSIVE)
            new_meta = _with_finalizer(meta, add=False)
        elif phase != Phase.UNKNOWN:
            status = phases.with_phase(status, Phase.UNKNOWN, precise)
        if not deleting:
            status = msgspec.structs.replace(status, conditions=with_condition(status.conditions, Condition(
                type=ConditionType.READY, status=ConditionStatus.FALSE, reason=Reason.NODE_UNRESPONSIVE,
                message=f"node {status.node_name} stopped reporting"), format_time(now)))
    if status == old_status and new_meta == meta:
        return None
    return msgspec.structs.replace(vmi, metadata=new_meta, status=status)
