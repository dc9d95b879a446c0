"""Run strategies: what the VM controller must do with a VM's VMI (pure decisions).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``syncRunStrategy``,
``isSetToStart``, ``isTrimFirstChangeRequestNeeded``, ``hasStartRequest``,
``hasStopRequestForVMI``) and ``staging/src/kubevirt.io/api/core/v1/types.go``
(``VirtualMachine.RunStrategy``). The effects (creating/deleting the VMI, writing status) are
in ``vm_controller.py``; this module only decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.virt_controller import phases
from services.virt_controller.backoff import compute_backoff_time_left
from services.virt_controller.sync_error import UNKNOWN_RUN_STRATEGY, SyncError

ALWAYS = "Always"
RERUN_ON_FAILURE = "RerunOnFailure"
MANUAL = "Manual"
HALTED = "Halted"
ONCE = "Once"
WAIT_AS_RECEIVER = "WaitAsReceiver"
RUN_STRATEGIES = (ALWAYS, RERUN_ON_FAILURE, MANUAL, HALTED, ONCE)

START = "Start"
STOP = "Stop"


def compute_run_strategy(vm: dict[str, Any]) -> str:
    """The effective run strategy: ``spec.runStrategy``, or ``running`` true→Always, false→Halted.

    Neither set means Halted (KubeVirt's ``RunStrategy()``). Raises SyncError (not retryable)
    when both are set or the value is not a known strategy.
    """
    spec = vm.get("spec") or {}
    running = spec.get("running")
    strategy = spec.get("runStrategy")
    if running is not None and strategy is not None:
        raise SyncError("running and runstrategy are mutually exclusive",
                        reason=UNKNOWN_RUN_STRATEGY, retryable=False)
    if running is not None:
        return ALWAYS if running else HALTED
    if strategy is None:
        return HALTED
    if strategy not in RUN_STRATEGIES:
        raise SyncError(f"unknown runstrategy: {strategy}", reason=UNKNOWN_RUN_STRATEGY,
                        retryable=False)
    return strategy


def _requests(vm_status: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((vm_status or {}).get("stateChangeRequests") or [])


def has_start_request(vm_status: dict[str, Any] | None) -> bool:
    """The first state change request is Start."""
    reqs = _requests(vm_status)
    return bool(reqs) and reqs[0].get("action") == START


def has_start_paused_request(vm_status: dict[str, Any] | None) -> bool:
    """The first request is Start with ``data.paused == "true"`` (start the VMI paused)."""
    reqs = _requests(vm_status)
    return bool(reqs) and reqs[0].get("action") == START \
        and (reqs[0].get("data") or {}).get("paused") == "true"


def has_stop_request_for(vm_status: dict[str, Any] | None, vmi: dict[str, Any] | None) -> bool:
    """The first request is Stop and names this VMI's UID."""
    reqs = _requests(vm_status)
    if not reqs or vmi is None or reqs[0].get("action") != STOP:
        return False
    uid = reqs[0].get("uid")
    return uid is not None and uid == (vmi.get("metadata") or {}).get("uid")


def compute_trimmed_requests(requests: list[dict[str, Any]] | None,
                             vmi: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Drop leading requests that have been carried out.

    A leading Stop is done once the VMI is gone or has another UID (or the Stop has no UID);
    a leading Start is done once a non-final VMI that is not being deleted exists. KubeVirt
    trims one per status update; trimming all carried-out ones at once reaches the same state
    with fewer writes.
    """
    reqs = list(requests or [])
    vmi_uid = (vmi or {}).get("metadata", {}).get("uid") if vmi else None
    while reqs:
        first = reqs[0]
        if first.get("action") == STOP:
            if vmi is None or first.get("uid") is None or first.get("uid") != vmi_uid:
                reqs.pop(0)
                continue
        elif first.get("action") == START:
            if vmi is not None and not phases.is_marked_for_deletion(vmi) and not phases.is_final(vmi):
                reqs.pop(0)
                continue
        else:  # an action we do not know can never be carried out
            reqs.pop(0)
            continue
        break
    return reqs


def is_set_to_start(strategy: str, vm_status: dict[str, Any] | None,
                    vmi: dict[str, Any] | None) -> bool:
    """Whether the VM is meant to be running now (KubeVirt's ``isSetToStart``)."""
    if strategy == ALWAYS:
        return True
    if strategy == HALTED:
        return False
    if strategy == MANUAL:
        if vmi is not None:
            return not has_stop_request_for(vm_status, vmi)
        return has_start_request(vm_status)
    if strategy == RERUN_ON_FAILURE:
        return vmi is None or phases.phase_of(vmi) != phases.SUCCEEDED
    if strategy == ONCE:
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


def _create_unless_backing_off(vm_status: dict[str, Any], now: datetime) -> RunStrategyAction:
    left = compute_backoff_time_left(vm_status.get("startFailure"), now)
    if left > 0:
        return RunStrategyAction(requeue_after=left)
    return RunStrategyAction(create=True)


def compute_run_strategy_action(strategy: str, vm_status: dict[str, Any] | None,
                                vmi: dict[str, Any] | None, now: datetime) -> RunStrategyAction:
    """KubeVirt's ``syncRunStrategy`` as a decision.

    Args:
        strategy: effective strategy from :func:`compute_run_strategy`.
        vm_status: the VM's ``status`` (stateChangeRequests, startFailure, runStrategy).
        vmi: the VM's VMI or None.
        now: current time (crash-loop backoff).
    Raises SyncError for an unknown strategy.
    """
    status = vm_status or {}
    if strategy == ALWAYS:
        if vmi is not None:
            if has_stop_request_for(status, vmi) or phases.is_final(vmi):
                return NOTHING if phases.is_marked_for_deletion(vmi) else RunStrategyAction(delete=True)
            return NOTHING
        return _create_unless_backing_off(status, now)
    if strategy == RERUN_ON_FAILURE:
        if vmi is not None:
            failed = phases.phase_of(vmi) == phases.FAILED
            succeeded = phases.phase_of(vmi) == phases.SUCCEEDED
            if not phases.is_marked_for_deletion(vmi) and (
                    has_stop_request_for(status, vmi) or failed or succeeded):
                return RunStrategyAction(delete=True,
                                         add_start_request=failed and not has_start_request(status))
            return NOTHING
        if not has_start_request(status) and status.get("runStrategy") == strategy:
            return NOTHING
        return _create_unless_backing_off(status, now)
    if strategy == MANUAL:
        if vmi is not None:
            if has_stop_request_for(status, vmi) and not phases.is_marked_for_deletion(vmi):
                return RunStrategyAction(delete=True)
            return NOTHING
        return RunStrategyAction(create=True) if has_start_request(status) else NOTHING
    if strategy == HALTED:
        if vmi is None:
            return RunStrategyAction(switch_to_always=True) if has_start_request(status) else NOTHING
        return NOTHING if phases.is_marked_for_deletion(vmi) else RunStrategyAction(delete=True)
    if strategy == ONCE:
        return RunStrategyAction(create=True) if vmi is None else NOTHING
    raise SyncError(f"unknown runstrategy: {strategy}", reason=UNKNOWN_RUN_STRATEGY, retryable=False)
