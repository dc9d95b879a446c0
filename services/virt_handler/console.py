"""virt-handler's side of the serial console: the guest's pty, served over NATS.

Owns :class:`ConsoleServer`: it answers ``ConsoleOpen`` requests (``shared.console``) for VMIs
whose domain runs here, opens the pty libvirt allocated for the domain's serial port 0 (read
from the live domain XML, ``<console type='pty' tty='/dev/pts/N'>``), puts it in raw mode (as
``virsh console`` does) and pumps bytes between the pty and the session's NATS subjects. One
session per domain at a time: a new one replaces the old, so several readers attach in turn.
A session ends when either side closes it, when the other side has been silent for
``IDLE_TIMEOUT_SECONDS`` (a killed virt-api), or when the pty hangs up (the guest stopped).
QEMU keeps writing the console log (virtlogd) whether or not a session is attached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tty
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.virt_handler.domain import domain_name
from services.virt_handler.hypervisor import Hypervisor, HypervisorError
from shared import console as proto
from shared import events

log = logging.getLogger(__name__)

READ_CHUNK = 4096


def compute_pty_path(domain_xml: str) -> str | None:
    """The host pty of serial port 0 in a running domain's XML (None when it has none)."""
    root = ET.fromstring(domain_xml)
    for element in root.findall("./devices/console") + root.findall("./devices/serial"):
        if element.get("type") != "pty":
            continue
        source = element.find("source")
        path = element.get("tty") or (source.get("path") if source is not None else None)
        if path:
            return path
    return None


@dataclass
class _Session:
    session: str
    domain: str
    fd: int
    last_heard: float = field(default_factory=time.monotonic)
    subscription: Any = None  # the bus subscription of the session input
    tasks: list[asyncio.Task] = field(default_factory=list)
    closed: bool = False


class ConsoleServer:
    """Serves serial consoles of this node's domains (see module docstring).

    ``bus``: ``shared.bus.Bus``; ``hypervisor``: an opened ``Hypervisor``. ``start()`` subscribes,
    ``stop()`` closes every session.
    """

    def __init__(self, bus, hypervisor: Hypervisor, node_name: str, *,
                 keepalive: float = proto.KEEPALIVE_SECONDS, idle_timeout: float = proto.IDLE_TIMEOUT_SECONDS):
        self.bus = bus
        self.hv = hypervisor
        self.node_name = node_name
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        self.sessions: dict[str, _Session] = {}  # domain name -> its session
        self._subscription = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(proto.console_open_subject(self.node_name), cb=self._on_open)

    async def stop(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception:  # connection already closed
                pass
            self._subscription = None
        for session in list(self.sessions.values()):
            await self._close(session, "virt-handler stopping")

    # -- opening -----------------------------------------------------------------------------
    async def _on_open(self, msg) -> None:
        try:
            request = proto.decode_open(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            result = events.CommandResult(code=400, reason="BadRequest", message=f"malformed console request: {err}")
        else:
            result = await self.open(request)
        try:
            await msg.respond(events.encode(result))
        except Exception as err:
            log.debug("answering a console request failed: %s", err)

    async def open(self, request: proto.ConsoleOpen) -> events.CommandResult:
        """Start a session for ``request``; 404 when the domain is not here (or another uid),
        409 when it is not running or has no serial console."""
        name = domain_name(request.namespace, request.name)
        try:
            domain = await self.hv.get_domain(name)
            if domain is None or (request.uid and domain.uid != request.uid):
                return events.CommandResult(code=404, reason="NotFound",
                                            message=f"VMI {request.namespace}/{request.name} has no domain on node "
                                                    f"{self.node_name}")
            if not domain.is_active:
                return events.CommandResult(code=409, reason="Conflict", message="VMI is not running")
            path = compute_pty_path(await self.hv.get_domain_xml(name))
        except HypervisorError as err:
            return events.CommandResult(code=500, reason="InternalError", message=err.message)
        if path is None:
            return events.CommandResult(code=409, reason="Conflict", message="No serial consoles are present.")
        previous = self.sessions.get(name)
        if previous is not None:
            await self._close(previous, proto.REPLACED)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(fd)  # no echo or line editing on our side of the pty: bytes pass unchanged
        except OSError as err:
            return events.CommandResult(code=500, reason="InternalError",
                                        message=f"cannot open the serial console {path}: {err}")
        session = _Session(request.session, name, fd)
        self.sessions[name] = session

        async def on_input(msg) -> None:
            await self._on_input(session, msg)

        async def on_close(msg) -> None:
            await self._close(session, "closed by virt-api", notify=False)

        session.subscription = await self.bus.subscribe(proto.session_subject(request.session, "in"), cb=on_input)
        close_sub = await self.bus.subscribe(proto.session_subject(request.session, "close"), cb=on_close)
        spawn = asyncio.get_running_loop().create_task
        session.tasks = [spawn(self._pump_out(session)), spawn(self._keepalive(session))]
        session.tasks.append(spawn(self._hold(close_sub, session)))
        log.info("console session %s opened for %s (%s)", request.session, name, path)
        return events.CommandResult()

    # -- pumping -----------------------------------------------------------------------------
    async def _on_input(self, session: _Session, msg) -> None:
        session.last_heard = time.monotonic()
        data = msg.data
        while data and not session.closed:
            try:
                written = os.write(session.fd, data)
                data = data[written:]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                await self._close(session, proto.GUEST_STOPPED)
                return

    async def _pump_out(self, session: _Session) -> None:
        # the reader is removed by _close only: the fd number may already belong to a newer
        # session when this task's cancellation arrives
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(session.fd, ready.set)
        reason = proto.GUEST_STOPPED
        try:
            while not session.closed:
                await ready.wait()
                ready.clear()
                try:
                    data = os.read(session.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the guest's side of the pty is gone
                    data = b""
                if not data:
                    break
                await self.bus.publish(proto.session_subject(session.session, "out"), data)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # publishing failed: end the session, the client reconnects
            reason = f"console output failed: {err}"
        if not session.closed:
            loop.create_task(self._close(session, reason))

    async def _keepalive(self, session: _Session) -> None:
        while not session.closed:
            await asyncio.sleep(self.keepalive)
            if time.monotonic() - session.last_heard > self.idle_timeout:
                asyncio.get_running_loop().create_task(self._close(session, "virt-api went silent"))
                return
            try:
                await self.bus.publish(proto.session_subject(session.session, "out"), b"")
            except Exception as err:
                log.debug("console keepalive failed: %s", err)

    @staticmethod
    async def _hold(subscription, session: _Session) -> None:
        try:
            while not session.closed:
                await asyncio.sleep(3600)
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:
                pass

    async def _close(self, session: _Session, reason: str, *, notify: bool = True) -> None:
        if session.closed:
            return
        session.closed = True
        if self.sessions.get(session.domain) is session:
            del self.sessions[session.domain]
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        asyncio.get_running_loop().remove_reader(session.fd)
        try:
            os.close(session.fd)
        except OSError:
            pass
        try:
            if session.subscription is not None:
                await session.subscription.unsubscribe()
            if notify:
                await self.bus.publish(proto.session_subject(session.session, "close"), reason.encode())
        except Exception as err:
            log.debug("closing console session %s: %s", session.session, err)
        log.info("console session %s of %s closed: %s", session.session, session.domain, reason)
