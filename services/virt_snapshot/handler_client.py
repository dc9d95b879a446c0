"""Request/reply to the virt-handler of a node: the snapshot commands of :mod:`shared.events`
(Freeze, Unfreeze, BackupVolumes, BackupStatus, AbortBackup) on ``handler.<node>.command``.

The bus injects the current span's context into the request headers, so the handler's
``freeze``/``backup``/``thaw`` spans join the snapshot's trace (as virt-api's vmi_commands do).
"""

from __future__ import annotations

from typing import Any

from shared import events
from shared.errors import ServiceUnavailable

#: seconds to wait for a handler's answer (a freeze waits for the guest agent: libvirt's agent
#: timeout is some seconds, so this is generous)
HANDLER_TIMEOUT = 30.0


class HandlerUnavailable(Exception):
    """The handler of ``node`` did not answer."""


class HandlerClient:
    """Sends handler commands over ``bus`` (a :class:`shared.bus.Bus`)."""

    def __init__(self, bus: Any, *, timeout: float = HANDLER_TIMEOUT) -> None:
        self.bus = bus
        self.timeout = timeout

    async def send(self, node: str, command: Any, *, timeout: float | None = None) -> events.CommandResult:
        """Send ``command`` to the handler of ``node``; its CommandResult (refusals included).
        Raises HandlerUnavailable when nobody answers within the timeout (seconds)."""
        try:
            reply = await self.bus.request(events.handler_command_subject(node), events.encode(command),
                                           timeout=timeout or self.timeout)
        except ServiceUnavailable as err:
            raise HandlerUnavailable(f"virt-handler of node {node} did not answer: {err}") from None
        return events.decode_command_result(reply.data)
