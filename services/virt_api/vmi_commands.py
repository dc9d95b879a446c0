"""VMI commands: the ``pause``, ``unpause``, ``softreboot``, ``freeze`` and ``unfreeze``
subresources.

They need the guest: each is checked here (KubeVirt's 409/403 answers from
``pkg/virt-api/rest/lifecycle.go``), the VMI is stamped with the request's trace, and the command
is sent as request/reply to the virt-handler of the VMI's node (:mod:`shared.events`), whose reply
becomes the answer. ``unpause`` is refused while the VM of the same name is being snapshotted
(``status.snapshotInProgress``); ``freeze`` reads its ``unfreezeTimeout`` body
(:mod:`services.virt_api.freeze_body`).
"""

from __future__ import annotations

from typing import Any

from services.virt_api.freeze_body import compute_unfreeze_timeout_seconds
from services.virt_api.subresource_rules import (
    GROUP,
    VM_SNAPSHOT_IN_PROGRESS,
    VMS,
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
from shared.errors import Forbidden, NotFound


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
    """PUT ``virtualmachineinstances/<name>/unpause``: 409 "VM snapshot is in progress" (on the
    VM) while the VM of that name is being snapshotted, 409 "VMI is not running" / "VMI is not
    paused"; then the handler resumes the guest."""
    try:
        vm = await store.get(VMS, namespace, name)
    except NotFound:
        vm = None
    if vm is not None and (vm.get("status") or {}).get("snapshotInProgress") is not None:
        raise conflict("virtualmachine", name, VM_SNAPSHOT_IN_PROGRESS)
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


async def freeze_vmi(store: Any, bus: Any, namespace: str, name: str, body: bytes,
                     content_type: str | None = None) -> None:
    """PUT ``virtualmachineinstances/<name>/freeze`` with ``{"unfreezeTimeout": "<duration>"}``:
    404 without the VMI, 409 "VM is not running" unless Running, 400 for a missing or unreadable
    timeout; then the handler freezes the guest's filesystems (``shared.events.Freeze``) and thaws
    them by itself after the timeout unless ``unfreeze`` comes first."""
    vmi = await _vmi_for_command(store, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachineinstance", name, VM_NOT_RUNNING)
    seconds = compute_unfreeze_timeout_seconds(body, content_type)
    vmi = await stamp_trace(store, VMIS, vmi)
    meta = vmi["metadata"]
    await _send_command(bus, vmi, events.Freeze(namespace=meta.get("namespace") or "", name=meta["name"],
                                                uid=meta.get("uid") or "", unfreeze_timeout_seconds=seconds))


async def unfreeze_vmi(store: Any, bus: Any, namespace: str, name: str) -> None:
    """PUT ``virtualmachineinstances/<name>/unfreeze``: 404 without the VMI, 409 "VMI is not
    running" unless Running; then the handler thaws the guest (``shared.events.Unfreeze``)."""
    vmi = await _vmi_for_command(store, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    vmi = await stamp_trace(store, VMIS, vmi)
    await _send_command(bus, vmi, _command(events.Unfreeze, vmi))
