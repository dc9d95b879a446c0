"""What scheduler-bridge writes on a VMI (pure): the placed VMI and the unschedulable status.

- placed (:func:`compute_placed_vmi`): ``status.nodeName``, label ``kubevirt.io/nodeName``,
  phase ``Scheduled`` with its transition timestamp (``metav1.MicroTime``), and no
  ``PodScheduled`` condition (KubeVirt only shows it while the pod cannot be scheduled);
- unschedulable (:func:`compute_unschedulable_status`): condition ``PodScheduled``
  ``False``/``Unschedulable`` with the scheduler's message, its ``lastTransitionTime`` kept while
  it stays False (the VM then shows ``ErrorUnschedulable``).

Inputs and outputs are :mod:`shared.api` Structs; inputs are never modified.
:func:`shared.api.decoding.encode_object` turns a Struct into the dict the store's ``update`` takes.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from shared.api.meta import Condition, ObjectMeta
from shared.api.migration import PhaseTransitionTimestamp
from shared.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from shared.api.vocabulary import (
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
    format_micro_time,
    format_time,
)

NODE_NAME_LABEL = "kubevirt.io/nodeName"

_replace = msgspec.structs.replace


def is_waiting_for_node(vmi: VirtualMachineInstance) -> bool:
    """Phase ``Scheduling``, no ``status.nodeName``, no ``deletionTimestamp``."""
    status = vmi.status
    return (status is not None and status.phase == Phase.SCHEDULING and not status.node_name
            and not (vmi.metadata is not None and vmi.metadata.deletion_timestamp))


def compute_placed_vmi(vmi: VirtualMachineInstance, node_name: str, now: datetime) -> VirtualMachineInstance:
    """The VMI after placement on ``node_name`` (see module docstring)."""
    meta = vmi.metadata or ObjectMeta()
    meta = _replace(meta, labels={**(meta.labels or {}), NODE_NAME_LABEL: node_name})
    status = vmi.status or VirtualMachineInstanceStatus()
    conditions = [c for c in status.conditions or [] if c.type != ConditionType.POD_SCHEDULED]
    status = _replace(
        status, node_name=node_name, phase=Phase.SCHEDULED.value,
        phase_transition_timestamps=[
            *(status.phase_transition_timestamps or []),
            PhaseTransitionTimestamp(phase=Phase.SCHEDULED.value, phase_transition_timestamp=format_micro_time(now))],
        conditions=conditions or None)
    return _replace(vmi, metadata=meta, status=status)


def compute_unschedulable_status(vmi: VirtualMachineInstance, message: str,
                                 now: datetime) -> VirtualMachineInstanceStatus | None:
    """The VMI status with ``PodScheduled=False/Unschedulable``, or None when it already says so."""
    status = vmi.status or VirtualMachineInstanceStatus()
    conditions = status.conditions or []
    current = next((c for c in conditions if c.type == ConditionType.POD_SCHEDULED), None)
    if current is not None and current.status == ConditionStatus.FALSE and \
            current.reason == Reason.UNSCHEDULABLE and current.message == message:
        return None
    since = current.last_transition_time if current is not None and current.status == ConditionStatus.FALSE \
        else None
    condition = Condition(type=ConditionType.POD_SCHEDULED.value, status=ConditionStatus.FALSE.value,
                          reason=Reason.UNSCHEDULABLE.value, message=message,
                          last_transition_time=since or format_time(now))
    return _replace(status, conditions=[*(c for c in conditions if c.type != ConditionType.POD_SCHEDULED),
                                        condition])
