"""The ``guestosinfo`` subresource of a VMI: the guest agent's view of the guest, read on demand.

``GET /apis/subresources.kubevirt.io/v1/namespaces/<ns>/virtualmachineinstances/<name>/guestosinfo``
answers KubeVirt's ``VirtualMachineInstanceGuestAgentInfo`` (``guestAgentVersion``, ``hostname``,
``os``, ``timezone``, ``userList``, ``fsInfo``, ...). As KubeVirt's ``GuestOSInfo`` handler does
(``kubevirt/kubevirt: pkg/virt-api/rest/subresource.go``): 404 when the VMI does not exist, 409
"VMI is not running" unless its phase is Running, 409 "VMI does not have guest agent connected"
without the ``AgentConnected`` condition; otherwise the virt-handler of the VMI's node reads the
agent (command ``GuestOSInfo`` on ``kubevirt.v1.handler.<node>.command``, :mod:`shared.events`)
and its reply body is the answer.
"""

from __future__ import annotations

from typing import Any

from services.virt_api.subresource_rules import VMI_NOT_RUNNING, VMIS, conflict, handler_refusal, request_handler
from shared import events
from shared.api.vocabulary import ConditionStatus, ConditionType, Phase
from shared.errors import ServiceUnavailable

NO_AGENT = "VMI does not have guest agent connected"


def is_agent_connected(vmi: dict[str, Any]) -> bool:
    """True when the VMI carries condition ``AgentConnected`` with status True (set by virt-handler)."""
    return any(c.get("type") == ConditionType.AGENT_CONNECTED and c.get("status") == ConditionStatus.TRUE
               for c in (vmi.get("status") or {}).get("conditions") or [])


async def get_guest_os_info(store: Any, bus: Any, namespace: str, name: str) -> dict[str, Any]:
    """The ``guestosinfo`` body of VMI ``namespace/name``.

    Raises NotFound (no such VMI, from the store), Conflict (not Running / no agent, or the
    handler says so), ServiceUnavailable (the node's handler did not answer in
    ``HANDLER_TIMEOUT`` seconds), or the handler's own error code.
    """
    vmi = await store.get(VMIS, namespace, name)
    status = vmi.get("status") or {}
    if status.get("phase") != Phase.RUNNING or not status.get("nodeName"):
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    if not is_agent_connected(vmi):
        raise conflict("virtualmachineinstance", name, NO_AGENT)
    meta = vmi["metadata"]
    command = events.GuestOSInfo(namespace=namespace, name=name, uid=meta.get("uid") or "")
    node = status["nodeName"]
    result = await request_handler(bus, node, events.handler_command_subject(node), command)
    if not result.ok:
        if result.code == 409:
            raise conflict("virtualmachineinstance", name, result.message or NO_AGENT)
        raise handler_refusal(result, name)
    return result.body or {}


async def _handle(call: Any) -> dict[str, Any]:
    bus = getattr(call.store, "bus", None)
    if bus is None:
        raise ServiceUnavailable("no message bus to reach virt-handler")
    return await get_guest_os_info(call.store, bus, call.namespace, call.name)


def register(registry: Any) -> None:
    """Serve ``virtualmachineinstances/<name>/guestosinfo`` (GET) on virt-api."""
    registry.add(VMIS, "guestosinfo", "GET", _handle)
