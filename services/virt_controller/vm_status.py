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
every pass), so recomputing an unchanged state gives an equal dict and no store write.
"""

from __future__ import annotations

from typing import Any

from services.virt_controller.conditions import find_condition, with_condition, without_condition
from services.virt_controller.printable_status import compute_printable_status
from services.virt_controller.run_strategy import compute_trimmed_requests
from services.virt_controller.sync_error import SyncError

NOT_MIRRORED = frozenset({"Ready", "Failure", "RestartRequired"})


def compute_vm_conditions(current: list[dict[str, Any]] | None, vmi: dict[str, Any] | None,
                          sync_error: SyncError | None, now: str) -> list[dict[str, Any]]:
    """The VM's conditions given its VMI and this reconcile's error."""
    conditions = list(current or [])
    if vmi is None:
        ready = {"type": "Ready", "status": "False", "reason": "VMINotExists",
                 "message": "VMI does not exist"}
    else:
        vmi_ready = find_condition(vmi, "Ready")
        if vmi_ready is None:
            ready = {"type": "Ready", "status": "False", "reason": "VMIConditionMissing",
                     "message": "VMI does not have a Ready condition"}
        else:
            ready = {k: v for k, v in vmi_ready.items() if k != "lastProbeTime"}
    conditions = with_condition(conditions, ready, now)
    if sync_error is not None:
        conditions = with_condition(conditions, {"type": "Failure", "status": "True",
                                                 "reason": sync_error.reason,
                                                 "message": sync_error.message}, now)
    else:
        conditions = without_condition(conditions, "Failure")
    if vmi is not None:
        vmi_conditions = [c for c in (vmi.get("status") or {}).get("conditions") or []
                          if c.get("type") not in NOT_MIRRORED]
        present = {c.get("type") for c in vmi_conditions}
        conditions = [c for c in conditions if c.get("type") in NOT_MIRRORED or c.get("type") in present]
        for cond in vmi_conditions:
            conditions = with_condition(conditions, {k: v for k, v in cond.items() if k != "lastProbeTime"}, now)
    return conditions


def compute_vm_status(vm: dict[str, Any], vmi: dict[str, Any] | None, run_strategy: str | None,
                      base_status: dict[str, Any], sync_error: SyncError | None, now: str, *,
                      start_expected: bool = False, stop_expected: bool = False) -> dict[str, Any]:
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
    status = {k: v for k, v in base_status.items()
              if k not in ("created", "ready", "printableStatus", "conditions", "stateChangeRequests")}
    if vmi is not None:
        status["created"] = True
        ready = find_condition(vmi, "Ready")
        if ready is not None and ready.get("status") == "True":
            status["ready"] = True
        if run_strategy is not None:
            status["runStrategy"] = run_strategy
    requests = compute_trimmed_requests(base_status.get("stateChangeRequests"), vmi)
    if requests:
        status["stateChangeRequests"] = requests
    if status.get("startFailure") is None:
        status.pop("startFailure", None)
    generation = (vm.get("metadata") or {}).get("generation")
    if generation is not None:
        status["observedGeneration"] = generation
    view = {"metadata": vm.get("metadata") or {}, "status": status}
    status["printableStatus"] = compute_printable_status(
        view, vmi, run_strategy or "", start_expected=start_expected, stop_expected=stop_expected)
    status["conditions"] = compute_vm_conditions(base_status.get("conditions"), vmi, sync_error, now)
    return status
