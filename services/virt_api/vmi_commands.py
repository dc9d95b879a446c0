"""VMI commands: the ``pause``, ``unpause`` and ``softreboot`` subresources.

They need the guest: each is checked here (KubeVirt's 409/403 answers from
``pkg/virt-api/rest/lifecycle.go``), the VMI is stamped with the request's trace, and the command
is sent as request/reply to the virt-handler of the VMI's node (:mod:`shared.events`), whose reply
becomes the answer.
"""

from __future__ import annotations

from typing import Any

from services.virt_api.subresource_rules import (
    GROUP,
    VM_NOT_RUNNING,
    VMI_NOT_PAUSED,
    VMI_NOT_RUNNING,
    VMIS,
    conflict,
    handler_refusal,
    has_condition,
    is_dry_run,
    phase_of,
    request_handler,
    stamp_trace,
)
from shared import events
from shared.api.vocabulary import ConditionStatus, ConditionType, Phase
from shared.errors import Forbidden


async def _vmi_for_command(store: Any, namespace: str, name: str) -> dict[str, Any]:
    return await store.get(VMIS, namespace, name)


async def _send_command(bus: Any, vmi: dict[str, Any], command: Any) -> None:
    node = (vmi.get("status") or {}).get("nodeName")
    name = vmi["metadata"]["name"]
    if not node:
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    result = await request_handler(bus, node, events.handler_command_subject(node), command)
    if not result.ok:
        raise handler_refusal(result, name)


def _command(cls: Any, vmi: dict[str, Any]) -> Any:
    meta = vmi["metadata"]
    return cls(namespace=meta.get("namespace") or "", name=meta["name"], uid=meta.get("uid") or "")


async def pause_vmi(store: Any, bus: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/pause``: 409 "VM is not running" unless Running,
    403 with a liveness probe, 409 "VMI is already paused"; then the handler pauses the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachineinstance", name, VM_NOT_RUNNING)
    if (vmi.get("spec") or {}).get("livenessProbe") is not None:
        raise Forbidden(f'virtualmachineinstance.{GROUP} "{name}" is forbidden: Pausing VMIs with '
                        "LivenessProbe is currently not supported", kind="virtualmachineinstance", name=name,
                        group=GROUP)
    if has_condition(vmi, ConditionType.PAUSED):
        raise conflict("virtualmachineinstance", name, "VMI is already paused")
    if not is_dry_run(options or {}):
        vmi = await stamp_trace(store, VMIS, vmi)
        await _send_command(bus, vmi, _command(events.Pause, vmi))


async def unpause_vmi(store: Any, bus: Any, namespace: str, name: str, options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/unpause``: 409 "VMI is not running" / "VMI is not
    paused"; then the handler resumes the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    if not has_condition(vmi, ConditionType.PAUSED):
        raise conflict("virtualmachineinstance", name, VMI_NOT_PAUSED)
    if not is_dry_run(options or {}):
        vmi = await stamp_trace(store, VMIS, vmi)
        await _send_command(bus, vmi, _command(events.Unpause, vmi))


async def soft_reboot_vmi(store: Any, bus: Any, namespace: str, name: str,
                          options: dict[str, Any] | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/softreboot``: 409 unless Running, not paused, and the
    guest agent is connected or ACPI is not disabled; then the handler reboots the guest."""
    vmi = await _vmi_for_command(store, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachineinstance", name, VM_NOT_RUNNING)
    if has_condition(vmi, ConditionType.PAUSED, ConditionStatus.TRUE):
        raise conflict("virtualmachineinstance", name, "VMI is paused")
    if not has_condition(vmi, ConditionType.AGENT_CONNECTED):
        acpi = ((((vmi.get("spec") or {}).get("domain") or {}).get("features") or {}).get("acpi") or {})
        if acpi.get("enabled") is False:
            raise conflict("virtualmachineinstance", name,
                           "VMI neither have the agent connected nor the ACPI feature enabled")
    vmi = await stamp_trace(store, VMIS, vmi)
    await _send_command(bus, vmi, _command(events.SoftReboot, vmi))
