"""virt-handler's command server: lifecycle commands for the VMIs on this node.

Commands (``shared.events``: ``Pause``, ``Unpause``, ``SoftReboot``, ``GuestOSInfo``, ``Freeze``,
``Unfreeze`` (``freeze``/``freeze_decision``), ``BackupVolumes``, ``BackupStatus``, ``AbortBackup``
(``backup``/``backup_plan``)) arrive as requests on
``shared.events.handler_command_subject(node)`` and are answered with a ``CommandResult``
(the HTTP code virt-api returns). Whether a command may run is decided by pure functions,
KubeVirt's rules (``pkg/virt-api/rest/subresource.go``, ``pkg/virt-handler/rest``):

- 404 ``NotFound``: the VMI is not on this node, or ``command.uid`` names another VMI;
- 409 ``Conflict``: no running domain, or the VMI is not ``Running``; a soft reboot of a
  paused guest; guest OS info without a connected guest agent; libvirt refusing the
  operation in the domain's state (``OperationInvalid``);
- 422 ``Invalid``: a backup of a volume the domain has no disk for;
- 500 ``InternalError``: any other libvirt failure (for a freeze: the guest agent's error or
  its silence past the call timeout).

After a command changed the domain the VMI is queued, so its status follows at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from services.virt_handler import guest_agent
from services.virt_handler.backup import BackupKeeper
from services.virt_handler.domain import domain_name
from services.virt_handler.freeze import FreezeKeeper
from services.virt_handler.freeze_decision import compute_agent_error, compute_freeze_refusal
from services.virt_handler.migration_decision import is_migration_in_flight
from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError
from shared import events
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import Phase, object_key

log = logging.getLogger(__name__)

NO_AGENT = "VMI does not have guest agent connected"


def compute_command_not_here(command: events.HandlerCommand, vmi: VirtualMachineInstance | None,
                             node_name: str) -> events.CommandResult | None:
    """404 when the VMI the command addresses is not on this node (None: it is)."""
    uid = vmi.metadata.uid if vmi is not None and vmi.metadata is not None else None
    if vmi is None or (command.uid and uid != command.uid):
        key = object_key(command.namespace, command.name)
        return events.CommandResult(code=404, reason="NotFound",
                                    message=f"VMI {key} is not running on node {node_name}")
    return None


def compute_command_refusal(command: events.HandlerCommand, vmi: VirtualMachineInstance,
                            domain: DomainInfo | None, agent_connected: bool) -> events.CommandResult | None:
    """409 when the state of the VMI or its domain forbids ``command`` (None: go ahead)."""
    phase = vmi.status.phase if vmi.status is not None else None
    if domain is None or not domain.is_active or phase != Phase.RUNNING:
        return events.CommandResult(code=409, reason="Conflict", message="VMI is not running")
    if isinstance(command, events.SoftReboot) and domain.state == "Paused":
        return events.CommandResult(code=409, reason="Conflict", message="VMI is paused")
    if isinstance(command, events.GuestOSInfo) and not agent_connected:
        return events.CommandResult(code=409, reason="Conflict", message=NO_AGENT)
    return None


def compute_command_error(err: HypervisorError) -> events.CommandResult:
    """The answer for a libvirt failure: 409 when the domain's state forbids it, else 500."""
    if err.reason == "OperationInvalid":
        return events.CommandResult(code=409, reason="Conflict", message=err.message)
    return events.CommandResult(code=500, reason="InternalError", message=err.message)


class CommandServer:
    """Answers the commands for the VMIs of node ``node_name``.

    ``bus``: ``shared.bus.Bus`` (None: no subscription; ``handle`` still works); ``hypervisor``:
    the gateway; ``lookup(key)``: the cached VMI Struct on this node (None: not here);
    ``agent_connected``: domain name -> guest agent connected; ``changed(key)``: called after
    a command changed a VMI's domain (queues it); ``freezes``: the ``freeze.FreezeKeeper``,
    ``backups``: the ``backup.BackupKeeper`` (None: those commands answer 501).
    """

    def __init__(self, bus: Any, hypervisor: Any, node_name: str, *,
                 lookup: Callable[[str], VirtualMachineInstance | None], agent_connected: dict[str, bool],
                 changed: Callable[[str], None], freezes: FreezeKeeper | None = None,
                 backups: BackupKeeper | None = None):
        self.bus = bus
        self.hv = hypervisor
        self.node_name = node_name
        self.lookup = lookup
        self.agent_connected = agent_connected
        self.changed = changed
        self.freezes = freezes
        self.backups = backups
        self._subscription: Any = None
        self._actions: dict[type, Callable[[str], Awaitable[dict[str, Any] | None]]] = {
            events.Pause: self.hv.pause, events.Unpause: self.hv.resume, events.SoftReboot: self.hv.reboot,
            events.GuestOSInfo: self._guest_os_info}

    async def start(self) -> None:
        """Subscribe to this node's command subject."""
        if self.bus is not None:
            self._subscription = await self.bus.subscribe(events.handler_command_subject(self.node_name),
                                                          cb=self._on_message)

    async def stop(self) -> None:
        """Unsubscribe (a closed connection is fine)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except Exception as err:  # noqa: BLE001 - connection already closed
                log.debug("unsubscribing the command server: %s", err)

    async def _on_message(self, msg: Any) -> None:
        try:
            command = events.decode_command(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            result = events.CommandResult(code=400, reason="BadRequest", message=f"malformed command: {err}")
        else:
            result = await self.handle(command)
        try:
            await msg.respond(events.encode(result))
        except Exception as err:  # noqa: BLE001 - the requester may be gone
            log.debug("answering a command failed: %s", err)

    async def handle(self, command: events.HandlerCommand) -> events.CommandResult:
        """Execute ``command`` for a VMI on this node and say how it went (module docstring)."""
        key = object_key(command.namespace, command.name)
        vmi = self.lookup(key)
        refused = compute_command_not_here(command, vmi, self.node_name)
        if refused is not None or vmi is None:
            return refused or events.CommandResult(code=404, reason="NotFound")
        name = domain_name(command.namespace, command.name)
        domain = await self.hv.get_domain(name)
        if isinstance(command, (events.Freeze, events.Unfreeze)):
            return await self._freeze_or_thaw(command, key, vmi, domain)
        if isinstance(command, (events.BackupVolumes, events.BackupStatus, events.AbortBackup)):
            return await self._backup(command, vmi, domain)
        refused = compute_command_refusal(command, vmi, domain, self.agent_connected.get(name, False))
        if refused is not None:
            return refused
        try:
            body = await self._actions[type(command)](name)
        except HypervisorError as err:
            return compute_command_error(err)
        if isinstance(command, events.GuestOSInfo):
            return events.CommandResult(body=body)
        self.changed(key)
        return events.CommandResult()

    async def _freeze_or_thaw(self, command: events.Freeze | events.Unfreeze, key: str,
                              vmi: VirtualMachineInstance, domain: DomainInfo | None) -> events.CommandResult:
        if self.freezes is None:
            return events.CommandResult(code=501, reason="NotImplemented", message="freeze is not served here")
        uid = vmi.metadata.uid if vmi.metadata is not None else None
        if not uid:
            return events.CommandResult(code=409, reason="Conflict", message="VMI has no uid")
        name = domain_name(command.namespace, command.name)
        running = vmi.status is not None and vmi.status.phase == Phase.RUNNING
        armed = self.freezes.deadline_of(uid) is not None
        refused = compute_freeze_refusal(command, domain, running, self.agent_connected.get(name, False),
                                         is_migration_in_flight(vmi), armed)
        if refused is not None:
            return refused
        try:
            if isinstance(command, events.Freeze):
                if command.unfreeze_timeout_seconds <= 0:
                    return events.CommandResult(code=400, reason="BadRequest",
                                                message="Unfreeze timeout in freeze request is not set")
                await self.freezes.freeze(key, name, uid, command.unfreeze_timeout_seconds)
            else:
                await self.freezes.thaw(key, name, uid)
        except HypervisorError as err:
            return compute_agent_error(err)
        except OSError as err:
            return events.CommandResult(code=500, reason="InternalError", message=f"recording the deadline: {err}")
        finally:
            self.changed(key)
        return events.CommandResult()

    async def _backup(self, command: events.BackupVolumes | events.BackupStatus | events.AbortBackup,
                      vmi: VirtualMachineInstance, domain: DomainInfo | None) -> events.CommandResult:
        if self.backups is None:
            return events.CommandResult(code=501, reason="NotImplemented", message="backup is not served here")
        name = domain_name(command.namespace, command.name)
        try:
            if isinstance(command, events.BackupStatus):
                return await self.backups.status(command, name)
            if isinstance(command, events.AbortBackup):
                return await self.backups.abort(command, name)
            refused = compute_command_refusal(command, vmi, domain, True)
            if refused is not None:
                return refused
            return await self.backups.begin(command, name)
        except HypervisorError as err:
            return compute_command_error(err)
        except OSError as err:
            return events.CommandResult(code=500, reason="InternalError", message=str(err))

    async def _guest_os_info(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = await guest_agent.fetch_guest_agent_info(self.hv, name)
        return info
