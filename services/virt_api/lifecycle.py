"""VM and VMI lifecycle subresources: start, stop, restart, pause, unpause, softreboot.

KubeVirt's answers per run strategy (``kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go``):
202 Accepted on success; 409 Conflict with KubeVirt's message otherwise (table in
kubevirt-api.md §4). start/stop/restart never touch a VMI directly: they rewrite
``spec.runStrategy``/``spec.running`` or append ``status.stateChangeRequests`` that the VM
controller carries out. The request list is changed only if it still is what we read (KubeVirt
uses a JSON-patch ``test``); a store Conflict with an unchanged list is retried, a changed list
is a 409. pause/unpause/softreboot need the guest: they are checked here and then sent as
request/reply commands to the virt-handler of the VMI's node (:mod:`shared.events`), whose
reply becomes the answer.

Tracing (docs/tracing.md): every operation that acts leaves the VM — or, for the VMI commands
and grace-period changes, the VMI — carrying the request's ``kubevirt-py.io/trace-id`` and
``traceparent`` annotations, so the reconciles and syncs it causes join the request's trace.
A ``/status`` write keeps metadata, so request-list changes stamp the VM with a metadata-only
update first. Dry-run writes nothing.

The ``*_vm``/``*_vmi`` coroutines take an ObjectStore (and a Bus for VMI commands) and raise
:mod:`shared.errors`; :func:`register` serves them on virt-api's subresource routes.
"""

from __future__ import annotations

import copy
from typing import Any

from shared import events, tracing
from shared.api.run_strategy import RunStrategyError, read_run_strategy
from shared.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    ServiceUnavailable,
)

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
GROUP = "kubevirt.io"

VM_NOT_RUNNING = "VM is not running"
VMI_NOT_RUNNING = "VMI is not running"
VMI_NOT_PAUSED = "VMI is not paused"
UNDERWAY = "unable to complete request: stop/start already underway"
MANUAL_RECOVERY = ("VM recovery required: Volume migration failed, leaving some volumes pointing to non-consistent "
                   "targets; manually set the volumes to the original ones")
FINAL = ("Succeeded", "Failed")
HANDLER_TIMEOUT = 30.0


def conflict(kind: str, name: str, why: str) -> Conflict:
    """KubeVirt's ``errors.NewConflict(v1.Resource(kind), name, why)``."""
    return Conflict(f'Operation cannot be fulfilled on {kind}.{GROUP} "{name}": {why}', kind=kind,
                    name=name, group=GROUP)


def _is_dry_run(options: dict[str, Any]) -> bool:
    dry = options.get("dryRun")
    return bool(dry) and (dry == ["All"] or dry is True or dry == "All")


def _run_strategy(vm: dict[str, Any]) -> str:
    spec = vm.get("spec") or {}
    try:
        return read_run_strategy(spec.get("running"), spec.get("runStrategy"))
    except RunStrategyError as err:
        raise InternalError(f"Internal error occurred: {err}") from None


def _phase(vmi: dict[str, Any] | None) -> str:
    return ((vmi or {}).get("status") or {}).get("phase") or ""


def _has_condition(obj: dict[str, Any] | None, ctype: str, status: str | None = None) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and (status is None or cond.get("status") == status):
            return True
    return False


async def _get_vmi(store: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await store.get(VMIS, namespace, name)
    except NotFound:
        return None


def compute_change_requests(current: list[dict[str, Any]] | None,
                            changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new ``stateChangeRequests`` (KubeVirt ``getChangeRequestJson``): the changes when none
    are queued, a lone Stop replaces what is queued, anything else raises InternalError
    ("stop/start already underway")."""
    if not current:
        return list(changes)
    if len(changes) == 1 and changes[0].get("action") == "Stop":
        return list(changes)
    raise InternalError(f"Internal error occurred: {UNDERWAY}")


def _with_trace(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``obj`` with the request's trace annotations (:func:`shared.tracing.apply_trace_annotations`),
    or None when that changes nothing (tracing off, no current span, already stamped)."""
    desired = {**obj, "metadata": dict(obj.get("metadata") or {})}
    tracing.apply_trace_annotations(desired)
    return None if desired["metadata"] == obj.get("metadata") else desired


async def _stamp_trace(store: Any, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Record the request's trace on ``obj`` with a metadata-only compare-and-swap update of the
    main resource (no spec change, so ``generation`` stays; a Conflict re-reads and stamps again),
    so the reconciles and syncs this operation causes join its trace. Returns the stored object
    (``obj`` itself when nothing had to change). Raises NotFound when the object is gone."""
    while True:
        desired = _with_trace(obj)
        if desired is None:
            return obj
        try:
            return await store.update(plural, desired)
        except Conflict:
            meta = obj["metadata"]
            obj = await store.get(plural, meta.get("namespace"), meta["name"])


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
            stamped = _with_trace(vm)
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
        spec[field] = ("Always" if running else "Halted") if uses_strategy else running
        if dry_run:
            return
        desired = {**vm, "spec": spec, "metadata": dict(vm["metadata"])}
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
    vmi = await _get_vmi(store, namespace, name)
    if vmi is not None and _phase(vmi) not in FINAL and _phase(vmi) not in ("Unknown", ""):
        raise conflict("virtualmachine", name, "VM is already running")
    if _has_condition(vm, "ManualRecoveryRequired", "True"):
        raise conflict("virtualmachine", name, MANUAL_RECOVERY)
    paused = bool(options.get("paused"))
    start = {"action": "Start"}
    if paused:
        start["data"] = {"paused": "true"}
    dry_run = _is_dry_run(options)
    strategy = _run_strategy(vm)
    if strategy == "Halted":
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        if paused and template_spec.get("startStrategy") != "Paused":
            await _patch_requests(store, vm, [start], dry_run)
        else:
            await _patch_running(store, vm, True, dry_run)
    elif strategy in ("RerunOnFailure", "Manual"):
        if strategy == "RerunOnFailure" and _phase(vmi) == "Failed":
            raise conflict("virtualmachine", name, "RerunOnFailure does not support starting VM from failed state")
        needs_restart = vmi is not None and (
            (strategy == "RerunOnFailure" and _phase(vmi) == "Succeeded")
            or (strategy == "Manual" and _phase(vmi) in FINAL))
        changes = [{"action": "Stop", "uid": vmi["metadata"]["uid"]}, start] if needs_restart else [start]
        await _patch_requests(store, vm, changes, dry_run)
    elif strategy in ("Always", "Once"):
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
    dry_run = _is_dry_run(options)
    vm = await store.get(VMS, namespace, name)
    strategy = _run_strategy(vm)
    vmi = await _get_vmi(store, namespace, name)
    old_grace = None
    if vmi is not None and _phase(vmi) not in FINAL and grace is not None:
        old_grace = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
        if not dry_run and old_grace != grace:
            vmi = await _set_grace_period(store, vmi, grace)
    if strategy == "Halted":
        if vmi is None or _phase(vmi) in FINAL:
            raise conflict("virtualmachine", name, VM_NOT_RUNNING)
        if grace is None or (old_grace is not None and grace >= old_grace):
            raise conflict("virtualmachine", name,
                           "Halted only supports manual stop requests with a shorter graceperiod")
        await _patch_requests(store, vm, [{"action": "Stop", "uid": vmi["metadata"]["uid"]}], dry_run)
    elif strategy in ("RerunOnFailure", "Manual"):
        if vmi is None or _phase(vmi) in FINAL:
            raise conflict("virtualmachine", name, VM_NOT_RUNNING)
        await _patch_requests(store, vm, [{"action": "Stop", "uid": vmi["metadata"]["uid"]}], dry_run)
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
    if _has_condition(vm, "VolumesChange", "True"):
        raise conflict("virtualmachine", name, MANUAL_RECOVERY)
    strategy = _run_strategy(vm)
    if strategy in ("Halted", "Once"):
        raise conflict("virtualmachine", name, f"RunStategy {strategy} does not support manual restart requests")
    vmi = await _get_vmi(store, namespace, name)
    if vmi is None:
        raise conflict("virtualmachine", name, "VM is not running: Halted")
    dry_run = _is_dry_run(options)
    await _patch_requests(store, vm, [{"action": "Stop", "uid": vmi["metadata"]["uid"]}, {"action": "Start"}],
                          dry_run)
    if grace == 0 and not dry_run and _phase(vmi) not in FINAL:
        await _set_grace_period(store, vmi, 1)


# -- VMI commands through virt-handler ---------------------------------------------------------
async def _vmi_for_command(store: Any, namespace: str, name: str) -> dict[str, Any]:
    return await store.get(VMIS, namespace, name)


async def _send_command(bus: Any, vmi: dict[str, Any], command: Any) -> None:
    node = (vmi.get("status") or {}).get("nodeName")
    name = vmi["metadata"]["name"]
    if not node:
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    try:
        reply = await bus.request(events.handler_command_subject(node), events.encode(command),
                                  timeout=HANDLER_TIMEOUT)
    except ServiceUnavailable as err:
        raise ServiceUnavailable(f"virt-handler of node {node} did not answer: {err}") from None
    result = events.decode_command_result(reply.data)
    if not result.ok:
        raise ApiError(result.message or f"virt-handler refused: {result.reason}", code=result.code,
                       reason=result.reason or "InternalError", kind="virtualmachineinstance", name=name,
                       group=GROUP)


def _command(cls: Any, vmi: dict[str, Any]) -> Any:
    meta = vmi["metadata"]
    return cls(namespace=meta.get("namespace") or "", name=meta["name"], uid=meta.get("uid") or "")


async def pause_vmi(store: Any, bus: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/pause``: 409 "VM is not running" unless Running,
    403 with a liveness probe, 409 "VMI is already paused"; then the handler pauses the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if _phase(vmi) != "Running":
        raise conflict("virtualmachineinstance", name, VM_NOT_RUNNING)
    if (vmi.get("spec") or {}).get("livenessProbe") is not None:
        raise Forbidden(f'virtualmachineinstance.{GROUP} "{name}" is forbidden: Pausing VMIs with '
                        "LivenessProbe is currently not supported", kind="virtualmachineinstance", name=name,
                        group=GROUP)
    if _has_condition(vmi, "Paused"):
        raise conflict("virtualmachineinstance", name, "VMI is already paused")
    if not _is_dry_run(options or {}):
        vmi = await _stamp_trace(store, VMIS, vmi)
        await _send_command(bus, vmi, _command(events.Pause, vmi))


async def unpause_vmi(store: Any, bus: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/unpause``: 409 "VMI is not running" / "VMI is not
    paused"; then the handler resumes the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if _phase(vmi) != "Running":
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    if not _has_condition(vmi, "Paused"):
        raise conflict("virtualmachineinstance", name, VMI_NOT_PAUSED)
    if not _is_dry_run(options or {}):
        vmi = await _stamp_trace(store, VMIS, vmi)
        await _send_command(bus, vmi, _command(events.Unpause, vmi))


async def soft_reboot_vmi(store: Any, bus: Any, namespace: str, name: str,
                          options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/softreboot``: 409 unless Running, not paused, and the
    guest agent is connected or ACPI is not disabled; then the handler reboots the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if _phase(vmi) != "Running":
        raise conflict("virtualmachineinstance", name, VM_NOT_RUNNING)
    if _has_condition(vmi, "Paused", "True"):
        raise conflict("virtualmachineinstance", name, "VMI is paused")
    if not _has_condition(vmi, "AgentConnected"):
        acpi = ((((vmi.get("spec") or {}).get("domain") or {}).get("features") or {}).get("acpi") or {})
        if acpi.get("enabled") is False:
            raise conflict("virtualmachineinstance", name,
                           "VMI neither have the agent connected nor the ACPI feature enabled")
    vmi = await _stamp_trace(store, VMIS, vmi)
    await _send_command(bus, vmi, _command(events.SoftReboot, vmi))


# -- virt-api wiring ---------------------------------------------------------------------------
def _options(call: Any) -> dict[str, Any]:
    if not call.body or not call.body.strip():
        return {}
    from services.virt_api.negotiation import decode_object

    return decode_object(call.body, call.request.headers.get("Content-Type"))


def _vm_handler(operation: Any):
    async def handle(call: Any) -> None:
        await operation(call.store, call.namespace, call.name, _options(call))
        return None
    return handle


def _vmi_handler(operation: Any):
    async def handle(call: Any) -> None:
        bus = getattr(call.store, "bus", None)
        if bus is None:
            raise ServiceUnavailable("no message bus to reach virt-handler")
        await operation(call.store, bus, call.namespace, call.name, _options(call))
        return None
    return handle


def register(registry: Any) -> None:
    """Serve the lifecycle subresources on virt-api (``SubresourceRegistry.add``)."""
    registry.add(VMS, "start", "PUT", _vm_handler(start_vm))
    registry.add(VMS, "stop", "PUT", _vm_handler(stop_vm))
    registry.add(VMS, "restart", "PUT", _vm_handler(restart_vm))
    registry.add(VMIS, "pause", "PUT", _vmi_handler(pause_vmi))
    registry.add(VMIS, "unpause", "PUT", _vmi_handler(unpause_vmi))
    registry.add(VMIS, "softreboot", "PUT", _vmi_handler(soft_reboot_vmi))
