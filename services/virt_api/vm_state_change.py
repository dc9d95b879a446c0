"""VM state changes: the ``start``, ``stop`` and ``restart`` subresources of a VirtualMachine.

KubeVirt's answers per run strategy (``kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go``):
they never touch a VMI's state directly but rewrite ``spec.runStrategy``/``spec.running`` or
append ``status.stateChangeRequests`` that the VM controller carries out. The request list is
changed only if it still is what we read (KubeVirt uses a JSON-patch ``test``); a store Conflict
with an unchanged list is retried, a changed list is a 409. Dry-run writes nothing.

A spec rewrite goes through the VM admission's snapshot/restore lock
(:mod:`shared.admission.vm_lock_rules`) as KubeVirt's patch goes through its VM webhook: while a
snapshot or restore holds the VM, start/stop of an ``Always``/``Halted`` VM answer KubeVirt's
500 "Internal error occurred: admission webhook ... denied the request: Cannot update vm running
state until snapshot ... completes" (request-list changes are status writes and pass, as there).
"""

from __future__ import annotations

import copy
from typing import Any

from services.virt_api.subresource_rules import (
    MANUAL_RECOVERY,
    UNDERWAY,
    VM_NOT_RUNNING,
    VMIS,
    VMS,
    conflict,
    get_vmi,
    has_condition,
    is_dry_run,
    phase_of,
    read_run_strategy,
    with_trace,
)
from shared import tracing
from shared.admission.vm_lock_rules import compute_vm_lock_causes, lock_refusal_message
from shared.api.vocabulary import FINAL_PHASES, ConditionStatus, Phase, RunStrategy, StateChangeAction
from shared.errors import BadRequest, Conflict, InternalError

#: VM conditions KubeVirt checks before a start or restart (not in the shared vocabulary).
MANUAL_RECOVERY_REQUIRED = "ManualRecoveryRequired"
VOLUMES_CHANGE = "VolumesChange"


def compute_change_requests(current: list[dict[str, Any]] | None,
                            changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new ``stateChangeRequests`` (KubeVirt ``getChangeRequestJson``): the changes when none
    are queued, a lone Stop replaces what is queued, anything else raises InternalError
    ("stop/start already underway")."""
    if not current:
        return list(changes)
    if len(changes) == 1 and changes[0].get("action") == StateChangeAction.STOP:
        return list(changes)
    raise InternalError(f"Internal error occurred: {UNDERWAY}")


async def _patch_requests(store: Any, vm: dict[str, Any], changes: list[dict[str, Any]], dry_run: bool) -> None:
    """Set the VM's stateChangeRequests (and drop startFailure) if the list is still as read.

    A ``/status`` write never changes metadata (Kubernetes semantics), so the request's trace
    annotations go first in a metadata-only update of the main resource; both writes are
    compare-and-swap on the version read, and either Conflict re-reads and retries while the list
    is unchanged. The controller may see the stamped version before the requests: its reconcile
    then has nothing to do, but already belongs to this operation's trace."""
    name = vm["metadata"]["name"]
    expected = (vm.get("status") or {}).get("stateChangeRequests") or []
    while True:
        status = copy.deepcopy(vm.get("status") or {})
        status["stateChangeRequests"] = compute_change_requests(expected, changes)
        status.pop("startFailure", None)
        if dry_run:
            return
        try:
            stamped = with_trace(vm)
            if stamped is not None:
                vm = await store.update(VMS, stamped)
            await store.update(VMS, {**vm, "status": status}, subresource="status")
            return
        except Conflict:
            vm = await store.get(VMS, vm["metadata"].get("namespace"), name)
            if ((vm.get("status") or {}).get("stateChangeRequests") or []) != expected:
                raise conflict("virtualmachine", name, "the VM's stateChangeRequests changed meanwhile") from None


async def _patch_running(store: Any, vm: dict[str, Any], running: bool, dry_run: bool) -> None:
    """Rewrite ``spec.runStrategy`` (Always/Halted) or ``spec.running`` if still as read."""
    name = vm["metadata"]["name"]
    uses_strategy = (vm.get("spec") or {}).get("runStrategy") is not None
    field = "runStrategy" if uses_strategy else "running"
    expected = (vm.get("spec") or {}).get(field)
    while True:
        spec = copy.deepcopy(vm.get("spec") or {})
        spec[field] = (RunStrategy.ALWAYS if running else RunStrategy.HALTED) if uses_strategy else running
        desired = {**vm, "spec": spec, "metadata": dict(vm["metadata"])}
        locked = compute_vm_lock_causes(desired, vm)
        if locked:
            raise InternalError(f"Internal error occurred: {lock_refusal_message(locked[0])}")
        if dry_run:
            return
        tracing.apply_trace_annotations(desired)  # the reconciles this causes join the request's trace
        try:
            await store.update(VMS, desired)
            return
        except Conflict:
            vm = await store.get(VMS, vm["metadata"].get("namespace"), name)
            if (vm.get("spec") or {}).get(field) != expected:
                raise conflict("virtualmachine", name, f"spec.{field} changed meanwhile") from None


async def start_vm(store: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachines/<name>/start`` (``StartOptions{paused, dryRun}``).

    Raises NotFound, Conflict ("VM is already running", "<strategy> does not support manual
    start requests", "RerunOnFailure does not support starting VM from failed state"),
    InternalError ("stop/start already underway").
    """
    options = options or {}
    vm = await store.get(VMS, namespace, name)
    vmi = await get_vmi(store, namespace, name)
    if vmi is not None and phase_of(vmi) not in FINAL_PHASES and phase_of(vmi) not in (Phase.UNKNOWN, ""):
        raise conflict("virtualmachine", name, "VM is already running")
    if has_condition(vm, MANUAL_RECOVERY_REQUIRED, ConditionStatus.TRUE):
        raise conflict("virtualmachine", name, MANUAL_RECOVERY)
    paused = bool(options.get("paused"))
    start: dict[str, Any] = {"action": StateChangeAction.START}
    if paused:
        start["data"] = {"paused": "true"}
    dry_run = is_dry_run(options)
    strategy = read_run_strategy(vm)
    if strategy == RunStrategy.HALTED:
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        if paused and template_spec.get("startStrategy") != "Paused":
            await _patch_requests(store, vm, [start], dry_run)
        else:
            await _patch_running(store, vm, True, dry_run)
    elif strategy in (RunStrategy.RERUN_ON_FAILURE, RunStrategy.MANUAL):
        if strategy == RunStrategy.RERUN_ON_FAILURE and phase_of(vmi) == Phase.FAILED:
            raise conflict("virtualmachine", name, "RerunOnFailure does not support starting VM from failed state")
        needs_restart = vmi is not None and (
            (strategy == RunStrategy.RERUN_ON_FAILURE and phase_of(vmi) == Phase.SUCCEEDED)
            or (strategy == RunStrategy.MANUAL and phase_of(vmi) in FINAL_PHASES))
        changes = [start]
        if needs_restart and vmi is not None:
            changes.insert(0, {"action": StateChangeAction.STOP, "uid": vmi["metadata"]["uid"]})
        await _patch_requests(store, vm, changes, dry_run)
    elif strategy in (RunStrategy.ALWAYS, RunStrategy.ONCE):
        raise conflict("virtualmachine", name, f"{strategy} does not support manual start requests")


async def stop_vm(store: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachines/<name>/stop`` (``StopOptions{gracePeriod, dryRun}``).

    ``gracePeriod`` is first written to the VMI's ``terminationGracePeriodSeconds`` (0 = force:
    the handler destroys at once). Raises NotFound, Conflict ("VM is not running", "Halted only
    supports manual stop requests with a shorter graceperiod").
    """
    options = options or {}
    grace = options.get("gracePeriod")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
        raise BadRequest("gracePeriod has to be greater or equal to 0")
    dry_run = is_dry_run(options)
    vm = await store.get(VMS, namespace, name)
    strategy = read_run_strategy(vm)
    vmi = await get_vmi(store, namespace, name)
    old_grace = None
    if vmi is not None and phase_of(vmi) not in FINAL_PHASES and grace is not None:
        old_grace = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
        if not dry_run and old_grace != grace:
            vmi = await _set_grace_period(store, vmi, grace)
    if strategy == RunStrategy.HALTED:
        if vmi is None or phase_of(vmi) in FINAL_PHASES:
            raise conflict("virtualmachine", name, VM_NOT_RUNNING)
        if grace is None or (old_grace is not None and grace >= old_grace):
            raise conflict("virtualmachine", name,
                           "Halted only supports manual stop requests with a shorter graceperiod")
        await _patch_requests(store, vm, [{"action": StateChangeAction.STOP, "uid": vmi["metadata"]["uid"]}], dry_run)
    elif strategy in (RunStrategy.RERUN_ON_FAILURE, RunStrategy.MANUAL):
        if vmi is None or phase_of(vmi) in FINAL_PHASES:
            raise conflict("virtualmachine", name, VM_NOT_RUNNING)
        await _patch_requests(store, vm, [{"action": StateChangeAction.STOP, "uid": vmi["metadata"]["uid"]}], dry_run)
    else:  # Always, Once
        await _patch_running(store, vm, False, dry_run)


async def _set_grace_period(store: Any, vmi: dict[str, Any], grace: int) -> dict[str, Any]:
    """Write ``spec.terminationGracePeriodSeconds`` (seconds) of the VMI, stamped with the
    request's trace (the handler's shutdown then belongs to the stop/restart); retried on Conflict."""
    while True:
        spec = dict(vmi.get("spec") or {})
        spec["terminationGracePeriodSeconds"] = grace
        desired = {**vmi, "spec": spec, "metadata": dict(vmi["metadata"])}
        tracing.apply_trace_annotations(desired)
        try:
            return await store.update(VMIS, desired)
        except Conflict:
            meta = vmi["metadata"]
            vmi = await store.get(VMIS, meta.get("namespace"), meta["name"])


async def restart_vm(store: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachines/<name>/restart`` (``RestartOptions{gracePeriodSeconds, dryRun}``).

    Appends [Stop(vmi uid), Start]. ``gracePeriodSeconds: 0`` forces it (VMI grace set to 1 s,
    KubeVirt's shortest safe restart). Raises BadRequest (grace > 0 or < 0), Conflict
    ("RunStategy Halted|Once does not support manual restart requests" — KubeVirt's spelling —,
    "VM is not running: Halted"), InternalError ("stop/start already underway").
    """
    options = options or {}
    grace = options.get("gracePeriodSeconds")
    if grace is not None:
        if not isinstance(grace, int) or isinstance(grace, bool):
            raise BadRequest("gracePeriodSeconds must be an integer")
        if grace > 0:
            raise BadRequest("For force restart, only gracePeriod=0 is supported for now")
        if grace < 0:
            raise BadRequest("gracePeriod has to be greater or equal to 0")
    vm = await store.get(VMS, namespace, name)
    if has_condition(vm, VOLUMES_CHANGE, ConditionStatus.TRUE):
        raise conflict("virtualmachine", name, MANUAL_RECOVERY)
    strategy = read_run_strategy(vm)
    if strategy in (RunStrategy.HALTED, RunStrategy.ONCE):
        raise conflict("virtualmachine", name, f"RunStategy {strategy} does not support manual restart requests")
    vmi = await get_vmi(store, namespace, name)
    if vmi is None:
        raise conflict("virtualmachine", name, "VM is not running: Halted")
    dry_run = is_dry_run(options)
    restart = [{"action": StateChangeAction.STOP, "uid": vmi["metadata"]["uid"]}, {"action": StateChangeAction.START}]
    await _patch_requests(store, vm, restart, dry_run)
    if grace == 0 and not dry_run and phase_of(vmi) not in FINAL_PHASES:
        await _set_grace_period(store, vmi, 1)
