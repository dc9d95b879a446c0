"""What the VM and VMI subresources share: names, KubeVirt's messages and reads of an object.

Owns the resource names, KubeVirt's 409 messages and :func:`conflict`, the dry-run test, the
run-strategy reader, phase and condition reads, and stamping an object with the request's trace
(:func:`stamp_trace`; see :mod:`services.virt_api.lifecycle`). Used by the lifecycle, console and
guest-information subresources.
"""

from __future__ import annotations

from typing import Any

from shared import events, tracing
from shared.api.run_strategy import RunStrategyError
from shared.api.run_strategy import read_run_strategy as read_shared_run_strategy
from shared.errors import ApiError, Conflict, InternalError, NotFound, ServiceUnavailable

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
GROUP = "kubevirt.io"

VM_NOT_RUNNING = "VM is not running"
VMI_NOT_RUNNING = "VMI is not running"
VMI_NOT_PAUSED = "VMI is not paused"
VM_SNAPSHOT_IN_PROGRESS = "VM snapshot is in progress"
UNDERWAY = "unable to complete request: stop/start already underway"
MANUAL_RECOVERY = ("VM recovery required: Volume migration failed, leaving some volumes pointing to non-consistent "
                   "targets; manually set the volumes to the original ones")
#: Seconds virt-api waits for a virt-handler's reply to a command.
HANDLER_TIMEOUT = 30.0


def conflict(kind: str, name: str, why: str) -> Conflict:
    """KubeVirt's ``errors.NewConflict(v1.Resource(kind), name, why)``."""
    return Conflict(f'Operation cannot be fulfilled on {kind}.{GROUP} "{name}": {why}', kind=kind,
                    name=name, group=GROUP)


def is_dry_run(options: dict[str, Any]) -> bool:
    """True when the options ask for ``dryRun: [All]`` (also ``true`` / ``"All"``)."""
    dry = options.get("dryRun")
    return bool(dry) and (dry == ["All"] or dry is True or dry == "All")


def read_run_strategy(vm: dict[str, Any]) -> str:
    """The VM's run strategy by the one reader every service uses
    (:func:`shared.api.run_strategy.read_run_strategy`, KubeVirt's ``VirtualMachine.RunStrategy()``).
    Raises InternalError when ``running`` and ``runStrategy`` are both set or the strategy is
    unknown (admission refuses both on write; this meets only objects written around it)."""
    spec = vm.get("spec") or {}
    try:
        return read_shared_run_strategy(spec.get("running"), spec.get("runStrategy"))
    except RunStrategyError as err:
        raise InternalError(f"Internal error occurred: {err}") from None


def phase_of(vmi: dict[str, Any] | None) -> str:
    """``status.phase`` of ``vmi`` ("" when absent or no VMI)."""
    return ((vmi or {}).get("status") or {}).get("phase") or ""


def has_condition(obj: dict[str, Any] | None, ctype: str, status: str | None = None) -> bool:
    """True when ``obj`` has a condition of type ``ctype`` (with ``status``, when given)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and (status is None or cond.get("status") == status):
            return True
    return False


async def request_handler(bus: Any, node: str, subject: str, message: Any,
                          timeout: float = HANDLER_TIMEOUT) -> events.CommandResult:
    """Send ``message`` (a ``shared.events`` Struct) to the virt-handler of ``node`` on ``subject``
    and return its decoded ``CommandResult``. Raises ServiceUnavailable naming the node when its
    handler does not answer within ``timeout`` seconds."""
    try:
        reply = await bus.request(subject, events.encode(message), timeout=timeout)
    except ServiceUnavailable as err:
        raise ServiceUnavailable(f"virt-handler of node {node} did not answer: {err}") from None
    return events.decode_command_result(reply.data)


def handler_refusal(result: events.CommandResult, name: str) -> ApiError:
    """The error for a handler's refused command about VMI ``name``: its code, reason and message
    (reason InternalError when it gave none)."""
    return ApiError(result.message or f"virt-handler refused: {result.reason}", code=result.code,
                    reason=result.reason or "InternalError", kind="virtualmachineinstance", name=name,
                    group=GROUP)


async def get_vmi(store: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The VMI ``namespace/name``, None when there is none."""
    try:
        return await store.get(VMIS, namespace, name)
    except NotFound:
        return None


def with_trace(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``obj`` with the request's trace annotations (:func:`shared.tracing.apply_trace_annotations`),
    or None when that changes nothing (tracing off, no current span, already stamped)."""
    desired = {**obj, "metadata": dict(obj.get("metadata") or {})}
    tracing.apply_trace_annotations(desired)
    return None if desired["metadata"] == obj.get("metadata") else desired


async def stamp_trace(store: Any, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Record the request's trace on ``obj`` with a metadata-only compare-and-swap update of the
    main resource (no spec change, so ``generation`` stays; a Conflict re-reads and stamps again),
    so the reconciles and syncs this operation causes join its trace. Returns the stored object
    (``obj`` itself when nothing had to change). Raises NotFound when the object is gone."""
    while True:
        desired = with_trace(obj)
        if desired is None:
            return obj
        try:
            return await store.update(plural, desired)
        except Conflict:
            meta = obj["metadata"]
            obj = await store.get(plural, meta.get("namespace"), meta["name"])
