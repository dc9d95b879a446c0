"""Run strategies: what the VM controller must do with a VM's VMI (pure decisions).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``syncRunStrategy``,
``isSetToStart``, ``isTrimFirstChangeRequestNeeded``, ``hasStartRequest``,
``hasStopRequestForVMI``) and ``staging/src/kubevirt.io/api/core/v1/types.go``
(``VirtualMachine.RunStrategy``). The effects (creating/deleting the VMI, writing status) are
in ``vm_controller.py``; this module only decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.virt_controller import phases
from services.virt_controller.backoff import compute_backoff_time_left
from shared.sync_error import SyncError
from shared.api.run_strategy import RunStrategyError, run_strategy_of
from shared.api.vm import (
    VirtualMachine,
    VirtualMachineStateChangeRequest,
    VirtualMachineStatus,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import Phase, RunStrategy, StateChangeAction

UNKNOWN_RUN_STRATEGY = "UnknownRunStrategy"
"""Reason of a VM whose spec names no valid run strategy (KubeVirt's virt-controller)."""

Requests = Sequence[VirtualMachineStateChangeRequest]


def compute_run_strategy(vm: VirtualMachine) -> RunStrategy:
    """The effective run strategy (:func:`shared.api.run_strategy.run_strategy_of`).

    Raises SyncError (reason ``UnknownRunStrategy``, not retryable) when the spec names none,
    and for ``WaitAsReceiver``, which needs decentralized migration this project does not have.
    """
    try:
        strategy = run_strategy_of(vm.spec)
    except RunStrategyError as err:
        raise SyncError(str(err), reason=UNKNOWN_RUN_STRATEGY, retryable=False) from None
    if strategy == RunStrategy.WAIT_AS_RECEIVER:
        raise SyncError(f"unknown runstrategy: {strategy}", reason=UNKNOWN_RUN_STRATEGY, retryable=False)
    return strategy


def _requests(vm_status: VirtualMachineStatus | None) -> Requests:
    return (vm_status.state_change_requests if vm_status is not None else None) or ()


def _uid(vmi: VirtualMachineInstance | None) -> str | None:
    return vmi.metadata.uid if vmi is not None and vmi.metadata is not None else None


def has_start_request(vm_status: VirtualMachineStatus | None) -> bool:
    """The first state change request is Start."""
    reqs = _requests(vm_status)
    return bool(reqs) and reqs[0].action == StateChangeAction.START


def has_start_paused_request(vm_status: VirtualMachineStatus | None) -> bool:
    """The first request is Start with ``data.paused == "true"`` (start the VMI paused)."""
    reqs = _requests(vm_status)
    return bool(reqs) and reqs[0].action == StateChangeAction.START \
        and (reqs[0].data or {}).get("paused") == "true"


def has_stop_request_for(vm_status: VirtualMachineStatus | None, vmi: VirtualMachineInstance | None) -> bool:
    """The first request is Stop and names this VMI's UID."""
    reqs = _requests(vm_status)
    if not reqs or vmi is None or reqs[0].action != StateChangeAction.STOP:
        return False
    uid = reqs[0].uid
    return uid is not None and uid == _uid(vmi)


def compute_trimmed_requests(requests: Requests | None,
                             vmi: VirtualMachineInstance | None) -> list[VirtualMachineStateChangeRequest]:
    """Drop leading requests that have been carried out.

    A leading Stop is done once the VMI is gone or has another UID (or the Stop has no UID);
    a leading Start is done once a non-final VMI that is not being deleted exists. KubeVirt
    trims one per status update; trimming all carried-out ones at once reaches the same state
    with fewer writes.
    """
    reqs = list(requests or ())
    vmi_uid = _uid(vmi)
    while reqs:
        first = reqs[0]
        if first.action == StateChangeAction.STOP:
            if vmi is None or first.uid is None or first.uid != vmi_uid:
                reqs.pop(0)
                continue
        elif first.action == StateChangeAction.START:
            if vmi is not None and not phases.is_marked_for_deletion(vmi) and not phases.is_final(vmi):
                reqs.pop(0)
                continue
        else:  # an action we do not know can never be carried out
            reqs.pop(0)
            continue
        break
    return reqs


def is_set_to_start(strategy: str, vm_status: VirtualMachineStatus | None,
                    vmi: VirtualMachineInstance | None) -> bool:
    """Whether the VM is meant to be running now (KubeVirt's ``isSetToStart``)."""
    if strategy == RunStrategy.ALWAYS:
        return True
    if strategy == RunStrategy.HALTED:
        return False
    if strategy == RunStrategy.MANUAL:
        if vmi is not None:
            return not has_stop_request_for(vm_status, vmi)
        return has_start_request(vm_status)
    if strategy == RunStrategy.RERUN_ON_FAILURE:
        return vmi is None or phases.phase_of(vmi) != Phase.SUCCEEDED
    if strategy == RunStrategy.ONCE:
        return vmi is None
    return False


@dataclass(frozen=True)
class RunStrategyAction:
    """What the VM controller does in one reconcile.

    create: create the VMI from the template; delete: delete the VMI;
    add_start_request: append a Start request to ``status.stateChangeRequests`` (written
    before the delete so a failed VMI is restarted even if the controller dies in between);
    switch_to_always: rewrite ``spec.runStrategy`` to Always (or ``running`` to true);
    requeue_after: seconds until the crash-loop backoff allows the next create.
    """

    create: bool = False
    delete: bool = False
    add_start_request: bool = False
    switch_to_always: bool = False
    requeue_after: float | None = None


NOTHING = RunStrategyAction()


def compute_restore_hold(action: RunStrategyAction, vm_status: VirtualMachineStatus | None) -> RunStrategyAction:
    """``action`` without starting the VM while ``status.restoreInProgress`` names a restore:
    ``create`` and ``switch_to_always`` are dropped (stopping, start requests and backoff are
    kept), so the VM waits for virt-snapshot to rewrite its spec and clear the lock, and its next
    reconcile starts it if its run strategy still says so. KubeVirt keeps a restored VM from
    starting through the restore's lock and the VM admission of ``restoreInProgress``
    (pkg/storage/admitters/vm-storage-status.go); its VM controller itself sets no condition for it."""
    if vm_status is None or not vm_status.restore_in_progress or not (action.create or action.switch_to_always):
        return action
    return replace(action, create=False, switch_to_always=False)


def _create_unless_backing_off(vm_status: VirtualMachineStatus, now: datetime) -> RunStrategyAction:
    left = compute_backoff_time_left(vm_status.start_failure, now)
    if left > 0:
        return RunStrategyAction(requeue_after=left)
    return RunStrategyAction(create=True)


def compute_run_strategy_action(strategy: str, vm_status: VirtualMachineStatus | None,
                                vmi: VirtualMachineInstance | None, now: datetime) -> RunStrategyAction:
    """KubeVirt's ``syncRunStrategy`` as a decision.

    Args:
        strategy: effective strategy from :func:`compute_run_strategy`.
        vm_status: the VM's ``status`` (stateChangeRequests, startFailure, runStrategy).
        vmi: the VM's VMI or None.
        now: current time (crash-loop backoff).
    Raises SyncError for an unknown strategy.
    """
    status = vm_status or VirtualMachineStatus()
    deleting = phases.is_marked_for_deletion(vmi)
    if strategy == RunStrategy.ALWAYS:
        if vmi is not None:
            if has_stop_request_for(status, vmi) or phases.is_final(vmi):
                return NOTHING if deleting else RunStrategyAction(delete=True)
            return NOTHING
        return _create_unless_backing_off(status, now)
    if strategy == RunStrategy.RERUN_ON_FAILURE:
        if vmi is not None:
            failed = phases.phase_of(vmi) == Phase.FAILED
            succeeded = phases.phase_of(vmi) == Phase.SUCCEEDED
            if not deleting and (has_stop_request_for(status, vmi) or failed or succeeded):
                return RunStrategyAction(delete=True,
                                         add_start_request=failed and not has_start_request(status))
            return NOTHING
        if not has_start_request(status) and status.run_strategy == strategy:
            return NOTHING
        return _create_unless_backing_off(status, now)
    if strategy == RunStrategy.MANUAL:
        if vmi is not None:
            if has_stop_request_for(status, vmi) and not deleting:
                return RunStrategyAction(delete=True)
            return NOTHING
        return RunStrategyAction(create=True) if has_start_request(status) else NOTHING
    if strategy == RunStrategy.HALTED:
        if vmi is None:
            return RunStrategyAction(switch_to_always=True) if has_start_request(status) else NOTHING
        return NOTHING if deleting else RunStrategyAction(delete=True)
    if strategy == RunStrategy.ONCE:
        return RunStrategyAction(create=True) if vmi is None else NOTHING
    raise SyncError(f"unknown runstrategy: {strategy}", reason=UNKNOWN_RUN_STRATEGY, retryable=False)
