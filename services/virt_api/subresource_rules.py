"""What the VM and VMI subresources share: names, KubeVirt's messages and reads of an object.

Owns the resource names, KubeVirt's 409 messages and :func:`conflict`, the dry-run test, the
run-strategy reader, phase and condition reads, and stamping an object with the request's trace
(:func:`stamp_trace`; see :mod:`services.virt_api.lifecycle`). Used by the lifecycle, console and
guest-information subresources.
"""

from __future__ import annotations

from typing import Any

from shared import tracing
from shared.api.vocabulary import RunStrategy
from shared.errors import Conflict, InternalError, NotFound

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
GROUP = "kubevirt.io"

VM_NOT_RUNNING = "VM is not running"
VMI_NOT_RUNNING = "VMI is not running"
VMI_NOT_PAUSED = "VMI is not paused"
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
    """The VM's run strategy as KubeVirt's ``VirtualMachine.RunStrategy()`` reads it: ``running``
    true/false is Always/Halted, else ``spec.runStrategy`` (default Halted). A stored value is
    taken as it is (admission checks values on write; KubeVirt's virt-api does not re-check).
    Raises InternalError when both fields are set."""
    spec = vm.get("spec") or {}
    if spec.get("running") is not None and spec.get("runStrategy") is not None:
        raise InternalError("Internal error occurred: running and runstrategy are mutually exclusive")
    if spec.get("running") is not None:
        return RunStrategy.ALWAYS if spec["running"] else RunStrategy.HALTED
    return str(spec.get("runStrategy") or RunStrategy.HALTED)


def phase_of(vmi: dict[str, Any] | None) -> str:
    """``status.phase`` of ``vmi`` ("" when absent or no VMI)."""
    return ((vmi or {}).get("status") or {}).get("phase") or ""


def has_condition(obj: dict[str, Any] | None, ctype: str, status: str | None = None) -> bool:
    """True when ``obj`` has a condition of type ``ctype`` (with ``status``, when given)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and (status is None or cond.get("status") == status):
            return True
    return False


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
