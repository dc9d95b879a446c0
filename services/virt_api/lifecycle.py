"""VM and VMI lifecycle subresources: start, stop, restart, pause, unpause, softreboot, freeze,
unfreeze.

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

The ``*_vm`` coroutines (:mod:`services.virt_api.vm_state_change`) take an ObjectStore, the
``*_vmi`` ones (:mod:`services.virt_api.vmi_commands`) a Bus too; both raise :mod:`shared.errors`.
This module serves them on virt-api's subresource routes (:func:`register`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.virt_api.subresource_rules import (
    GROUP,
    HANDLER_TIMEOUT,
    VMI_NOT_RUNNING,
    VMIS,
    VMS,
    conflict,
)
from services.virt_api.vm_state_change import compute_change_requests, restart_vm, start_vm, stop_vm
from services.virt_api.vmi_commands import freeze_vmi, pause_vmi, soft_reboot_vmi, unfreeze_vmi, unpause_vmi
from shared.errors import ServiceUnavailable

__all__ = ["GROUP", "HANDLER_TIMEOUT", "VMIS", "VMI_NOT_RUNNING", "VMS", "compute_change_requests", "conflict",
           "freeze_vmi", "pause_vmi", "register", "restart_vm", "soft_reboot_vmi", "start_vm", "stop_vm",
           "unfreeze_vmi", "unpause_vmi"]


def _options(call: Any) -> dict[str, Any]:
    if not call.body or not call.body.strip():
        return {}
    from services.virt_api.negotiation import decode_object

    return decode_object(call.body, call.request.headers.get("Content-Type"))


Handler = Callable[[Any], Awaitable[None]]


def _vm_handler(operation: Callable[..., Awaitable[None]]) -> Handler:
    async def handle(call: Any) -> None:
        await operation(call.store, call.namespace, call.name, _options(call))
    return handle


def _bus(call: Any) -> Any:
    bus = getattr(call.store, "bus", None)
    if bus is None:
        raise ServiceUnavailable("no message bus to reach virt-handler")
    return bus


def _vmi_handler(operation: Callable[..., Awaitable[None]]) -> Handler:
    async def handle(call: Any) -> None:
        await operation(call.store, _bus(call), call.namespace, call.name, _options(call))
    return handle


async def _freeze(call: Any) -> None:
    await freeze_vmi(call.store, _bus(call), call.namespace, call.name, call.body,
                     call.request.headers.get("Content-Type"))


async def _unfreeze(call: Any) -> None:
    await unfreeze_vmi(call.store, _bus(call), call.namespace, call.name)


def register(registry: Any) -> None:
    """Serve the lifecycle subresources on virt-api (``SubresourceRegistry.add``)."""
    registry.add(VMS, "start", "PUT", _vm_handler(start_vm))
    registry.add(VMS, "stop", "PUT", _vm_handler(stop_vm))
    registry.add(VMS, "restart", "PUT", _vm_handler(restart_vm))
    registry.add(VMIS, "pause", "PUT", _vmi_handler(pause_vmi))
    registry.add(VMIS, "unpause", "PUT", _vmi_handler(unpause_vmi))
    registry.add(VMIS, "softreboot", "PUT", _vmi_handler(soft_reboot_vmi))
    registry.add(VMIS, "freeze", "PUT", _freeze)
    registry.add(VMIS, "unfreeze", "PUT", _unfreeze)
