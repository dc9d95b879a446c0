"""What the VMI controller writes on a VMI (pure).

Embedded installation, no pods (our reading of ``kubevirt/kubevirt:
pkg/virt-controller/watch/vmi/lifecycle.go`` and ``pkg/virt-controller/watch/node``):

* unset/Pending, not being deleted -> ``Scheduling`` (finalizer
  ``kubevirt.io/foregroundDeleteVirtualMachine`` added; no Ready condition yet, so the VM's
  mirrored status does not change and costs no write);
  scheduler-bridge then sets ``nodeName`` and ``Scheduled``;
* unset/Pending/Scheduling and being deleted (never reached a node) -> ``Failed``;
* Scheduled/Running on an ``UNRESPONSIVE`` node (:mod:`node_loss`) -> ``Unknown`` (condition
  ``Ready=False/NodeUnresponsive``), also when the VMI is being deleted: its guest may still run,
  so neither a replacement nor the end of the deletion may happen yet. virt-handler sets Running
  again when it comes back (it owns the status of VMIs on its node);
* Scheduled/Running/Unknown on a ``LOST`` node (silent past the heartbeat timeout and fenced, or
  deleted) -> ``Failed`` with ``reason: NodeUnresponsive`` (KubeVirt's node controller), the
  finalizer removed; the VM controller then restarts it as its run strategy says;
* final (Succeeded/Failed) -> the controller's finalizer is removed.

Who writes what: this controller the transitions above; scheduler-bridge ``nodeName``, label
``kubevirt.io/nodeName``, phase Scheduled and ``PodScheduled`` conditions; virt-handler
Running/Succeeded/Failed and the guest status.
"""

from __future__ import annotations

from datetime import datetime

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
)
from services.virt_controller.node_loss import NodeHealth

DELETED_BEFORE_START = "DeletedBeforeStart"
DELETED_WHILE_SCHEDULING = "DeletedWhileScheduling"


def _with_finalizer(meta: ObjectMeta, add: bool) -> ObjectMeta:
    finalizers = [f for f in meta.finalizers or () if f != VMI_CONTROLLER_FINALIZER]
    if add:
        finalizers.append(VMI_CONTROLLER_FINALIZER)
    return msgspec.structs.replace(meta, finalizers=finalizers or None)


def compute_vmi_update(vmi: VirtualMachineInstance, *, node_health: NodeHealth,
                       now: datetime) -> VirtualMachineInstance | None:
    """The VMI as this controller wants it, or None when there is nothing to write.

    Args:
        vmi: the cached VMI.
        node_health: for a VMI with ``status.nodeName``, that node's health
            (:func:`node_loss.compute_node_health`); ignored otherwise.
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
    on_node = phase in (Phase.SCHEDULED, Phase.RUNNING, Phase.UNKNOWN) and bool(status.node_name)
    if phases.is_final(vmi):
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", Phase.PENDING, Phase.SCHEDULING) and deleting:
        reason = DELETED_BEFORE_START if phase != Phase.SCHEDULING else DELETED_WHILE_SCHEDULING
        status = msgspec.structs.replace(phases.with_phase(status, Phase.FAILED, precise), reason=reason)
        new_meta = _with_finalizer(meta, add=False)
    elif phase in ("", Phase.PENDING):
        status = phases.with_phase(status, Phase.SCHEDULING, precise)
        new_meta = _with_finalizer(meta, add=True)
    elif on_node and node_health == NodeHealth.LOST:
        status = msgspec.structs.replace(phases.with_phase(status, Phase.FAILED, precise),
                                         reason=Reason.NODE_UNRESPONSIVE)
        status = _with_unresponsive_ready(status, f"node {status.node_name} was lost; its guest is gone", now)
        new_meta = _with_finalizer(meta, add=False)
    elif on_node and node_health == NodeHealth.UNRESPONSIVE:
        status = _with_unresponsive_ready(phases.with_phase(status, Phase.UNKNOWN, precise),
                                          f"node {status.node_name} stopped reporting", now)
    if status == old_status and new_meta == meta:
        return None
    return msgspec.structs.replace(vmi, metadata=new_meta, status=status)


def _with_unresponsive_ready(status: VirtualMachineInstanceStatus, message: str,
                             now: datetime) -> VirtualMachineInstanceStatus:
    return msgspec.structs.replace(status, conditions=with_condition(status.conditions, Condition(
        type=ConditionType.READY, status=ConditionStatus.FALSE, reason=Reason.NODE_UNRESPONSIVE,
        message=message), format_time(now)))
