"""The VirtualMachine's ``status`` as the VM controller writes it (pure).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``updateStatus``,
``syncConditions``, ``syncReadyConditionFromVMI``, ``processFailureCondition``):

* ``created``: a VMI exists; ``ready``: the VMI's Ready condition is True (both omitted when
  false, as KubeVirt's ``omitempty`` does);
* ``printableStatus`` from :mod:`printable_status`;
* conditions: ``Ready`` copied from the VMI (``VMINotExists`` / ``VMIConditionMissing`` when it
  cannot be), ``Failure`` while a reconcile fails, and every other VMI condition mirrored
  (removed once gone from the VMI);
* ``stateChangeRequests`` trimmed of carried-out requests; ``startFailure``; ``runStrategy``
  recorded once a VMI exists; ``observedGeneration``.

Times: conditions carry ``lastTransitionTime`` only (no ``lastProbeTime`` that would change on
every pass), so recomputing an unchanged state gives an equal status and no store write.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from services.virt_controller.conditions import (
    find_condition,
    with_condition,
    without_condition,
)
from services.virt_controller.printable_status import compute_printable_status
from services.virt_controller.run_strategy import compute_trimmed_requests
from shared.sync_error import SyncError
from shared.api.meta import Condition
from shared.api.vm import VirtualMachine, VirtualMachineStatus
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import ConditionStatus, ConditionType, Reason

RESTART_REQUIRED = "RestartRequired"
NOT_MIRRORED: frozenset[str] = frozenset({ConditionType.READY, ConditionType.FAILURE, RESTART_REQUIRED})


def _vmi_conditions(vmi: VirtualMachineInstance) -> list[Condition]:
    return list((vmi.status.conditions if vmi.status is not None else None) or ())


def _without_probe_time(cond: Condition) -> Condition:
    return cond if cond.last_probe_time is None else msgspec.structs.replace(cond, last_probe_time=None)


def compute_vm_conditions(current: Sequence[Condition] | None, vmi: VirtualMachineInstance | None,
                          sync_error: SyncError | None, now: str) -> list[Condition]:
    """The VM's conditions given its VMI and this reconcile's error."""
    conditions = list(current or ())
    if vmi is None:
        ready = Condition(type=ConditionType.READY, status=ConditionStatus.FALSE,
                          reason=Reason.VMI_NOT_EXISTS, message="VMI does not exist")
    else:
        vmi_ready = find_condition(_vmi_conditions(vmi), ConditionType.READY)
        if vmi_ready is None:
            ready = Condition(type=ConditionType.READY, status=ConditionStatus.FALSE,
                              reason=Reason.VMI_CONDITION_MISSING,
                              message="VMI does not have a Ready condition")
        else:
            ready = _without_probe_time(vmi_ready)
    conditions = with_condition(conditions, ready, now)
    if sync_error is not None:
        conditions = with_condition(conditions, Condition(
            type=ConditionType.FAILURE, status=ConditionStatus.TRUE, reason=sync_error.reason,
            message=sync_error.message), now)
    else:
        conditions = without_condition(conditions, ConditionType.FAILURE)
    if vmi is not None:
        mirrored = [c for c in _vmi_conditions(vmi) if c.type not in NOT_MIRRORED]
        present = {c.type for c in mirrored}
        conditions = [c for c in conditions if c.type in NOT_MIRRORED or c.type in present]
        for cond in mirrored:
            conditions = with_condition(conditions, _without_probe_time(cond), now)
    return conditions


def compute_vm_status(vm: VirtualMachine, vmi: VirtualMachineInstance | None, run_strategy: str | None,
                      base_status: VirtualMachineStatus, sync_error: SyncError | None, now: str, *,
                      start_expected: bool = False, stop_expected: bool = False) -> VirtualMachineStatus:
    """The VM status to store after a reconcile.

    Args:
        vm: the VM as cached (its metadata and spec are read).
        vmi: the VM's VMI after this reconcile's actions (None when absent).
        run_strategy: effective strategy (None when the spec's strategy is invalid).
        base_status: the status with this reconcile's bookkeeping already applied
            (``startFailure``, added requests).
        sync_error: the reconcile's error, shown in the ``Failure`` condition.
        now: RFC 3339 time for new condition transitions.
    """
    created: bool | None = None
    ready: bool | None = None
    recorded_strategy = base_status.run_strategy
    if vmi is not None:
        created = True
        vmi_ready = find_condition(_vmi_conditions(vmi), ConditionType.READY)
        if vmi_ready is not None and vmi_ready.status == ConditionStatus.TRUE:
            ready = True
        if run_strategy is not None:
            recorded_strategy = run_strategy
    generation = vm.metadata.generation if vm.metadata is not None else None
    status = msgspec.structs.replace(
        base_status, created=created, ready=ready, run_strategy=recorded_strategy,
        state_change_requests=compute_trimmed_requests(base_status.state_change_requests, vmi) or None,
        observed_generation=generation if generation is not None else base_status.observed_generation,
        printable_status=None, conditions=None)
    view = msgspec.structs.replace(vm, status=status)
    printable = compute_printable_status(view, vmi, run_strategy or "", start_expected=start_expected,
                                         stop_expected=stop_expected)
    return msgspec.structs.replace(
        status, printable_status=printable,
        conditions=compute_vm_conditions(base_status.conditions, vmi, sync_error, now))
