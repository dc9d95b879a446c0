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

import copy
from datetime import datetime
from typing import Any

from services.virt_controller import phases
from services.virt_controller.clock import format_micro_time, format_time, parse_time
from services.virt_controller.conditions import find_condition, with_condition
from services.virt_controller.vmi_template import VMI_CONTROLLER_FINALIZER

HEARTBEAT_ANNOTATION = "kubevirt.io/heartbeat"
DEFAULT_HEARTBEAT_TIMEOUT = 40.0
NODE_UNRESPONSIVE = "NodeUnresponsive"


def compute_last_heartbeat(node: dict[str, Any] | None) -> datetime | None:
    """Latest heartbeat of a Node: ``Ready`` condition ``lastHeartbeatTime`` or the
    ``kubevirt.io/heartbeat`` annotation, whichever is newer (None when neither)."""
    if not node:
        return None
    stamps: list[datetime] = []
    ready = find_condition(node, "Ready")
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
    ready = find_condition(node, "Ready")
    if ready is not None and ready.get("status") != "True":
        return False
    beat = compute_last_heartbeat(node)
    return beat is not None and (now - beat).total_seconds() <= timeout


def _with_finalizer(meta: dict[str, Any], add: bool) -> dict[str, Any]:
    finalizers = [f for f in meta.get("finalizers") or [] if f != VMI_CONTROLLER_FINALIZER]
    if add:
        finalizers.append(VMI_CONTROLLER_FINALIZER)
    new = dict(meta)
    if finalizers:
        new["finalizers"] = finalizers
    else:
        new.pop("finalizers", None)
    return new


def compute_vmi_update(vmi: dict[str, Any], *, node_responsive: bool, now: datetime) -> dict[str, Any] | None:
    """The VMI as this controller wants it, or None when there is nothing to write.

    Args:
        vmi: the cached VMI.
        node_responsive: for a VMI with ``status.nodeName``, whether that node's heartbeat is
            current (see :func:`is_node_responsive`); ignored otherwise.
        now: current time; phase transitions are stamped with microseconds (so start-up
            latency can be measured from the objects), conditions with seconds.
    """
    precise = format_micro_time(now)
    stamp = format_time(now)
    phase = phases.phase_of(vmi)
    deleting = phases.is_marked_for_deletion(vmi)
    status = copy.deepcopy(vmi.get("status") or {})
    meta = vmi.get("metadata") or {}
    new_meta = meta
    if phases.is_final(vmi):
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", phases.PENDING, phases.SCHEDULING) and deleting:
        status = phases.with_phase(status, phases.FAILED, precise)
        status["reason"] = "DeletedBeforeStart" if phase != phases.SCHEDULING else "DeletedWhileScheduling"
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", phases.PENDING):
        status = phases.with_phase(status, phases.SCHEDULING, precise)
        new_meta = _with_finalizer(meta, add=True)
    elif phase in (phases.SCHEDULED, phases.RUNNING, phases.UNKNOWN) and status.get("nodeName") \
            and not node_responsive:
        if deleting:
            status = phases.with_phase(status, phases.FAILED, precise)
            status["reason"] = NODE_UNRESPONSIVE
            new_meta = _with_finalizer(meta, add=False)
        elif phase != phases.UNKNOWN:
            status = phases.with_phase(status, phases.UNKNOWN, precise)
        if not deleting:
            status["conditions"] = with_condition(status.get("conditions"), {
                "type": "Ready", "status": "False", "reason": NODE_UNRESPONSIVE,
                "message": f"node {status['nodeName']} stopped reporting"}, stamp)
    if status == (vmi.get("status") or {}) and new_meta == meta:
        return None
    return {**vmi, "metadata": new_meta, "status": status}
