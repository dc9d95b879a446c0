"""The handler's gateway to libvirt: the only module that imports ``libvirt``.

Owns one libvirt connection per ``Hypervisor``: every blocking libvirt call runs
in a bounded thread pool under a per-call timeout (one hung domain cannot freeze
the handler's asyncio loop), libvirt errors become ``HypervisorError`` with a
stable ``reason`` at this boundary, and libvirt's lifecycle and guest-agent
events arrive as an async iterator of ``LifecycleEvent``.

Events: libvirt's default event implementation runs on one native thread per
process (the pattern of Nova's ``host.py`` and vdsm's ``libvirtconnection``);
callbacks hand events to the owning asyncio loop with ``call_soon_threadsafe``.
This works with any number of connections and asyncio loops in one process,
which ``libvirtaio`` (bound to a single loop) does not.

States and reasons use KubeVirt's names (``pkg/virt-launcher/virtwrap/api``:
``Running``, ``Paused``, ``Shutoff``, ``Crashed``...; ``Shutdown``, ``Destroyed``,
``Crashed``, ``Failed``, ``User``, ``IOError``...), so the phase rules in
``status.py`` read like KubeVirt's. Domain XML is computed elsewhere
(``services.virt_handler.domain``); this module passes it through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import json

import contextvars

import libvirt
import libvirt_qemu
from opentelemetry.trace import SpanKind

from shared import tracing

log = logging.getLogger(__name__)

KUBEVIRT_METADATA_NS = "http://kubevirt.io"
T = TypeVar("T")

# libvirt state / reason codes -> KubeVirt names (virtwrap/api/types.go, libvirt-domain.h).
DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "NoState", libvirt.VIR_DOMAIN_RUNNING: "Running",
    libvirt.VIR_DOMAIN_BLOCKED: "Blocked", libvirt.VIR_DOMAIN_PAUSED: "Paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "Shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "Shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "Crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "PMSuspended",
}
STATE_REASONS = {
    libvirt.VIR_DOMAIN_RUNNING: {0: "Unknown", 1: "Booted", 2: "Migrated", 3: "Restored", 4: "FromSnapshot",
                                 5: "Unpaused", 6: "MigrationCanceled", 7: "SaveCanceled", 8: "WakeUp",
                                 9: "Crashed", 10: "PostCopy"},
    libvirt.VIR_DOMAIN_PAUSED: {0: "Unknown", 1: "User", 2: "Migration", 3: "Save", 4: "Dump", 5: "IOError",
                                6: "Watchdog", 7: "FromSnapshot", 8: "ShuttingDown", 9: "Snapshot",
                                10: "Crashed", 11: "StartingUp", 12: "PostCopy", 13: "PostCopyFailed"},
    libvirt.VIR_DOMAIN_SHUTDOWN: {0: "Unknown", 1: "User"},
    libvirt.VIR_DOMAIN_SHUTOFF: {0: "Unknown", 1: "Shutdown", 2: "Destroyed", 3: "Crashed", 4: "Migrated",
                                 5: "Saved", 6: "Failed", 7: "FromSnapshot", 8: "Daemon"},
    libvirt.VIR_DOMAIN_CRASHED: {0: "Unknown", 1: "Panicked"},
}
LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "Defined", libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "Undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "Started", libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "Suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "Resumed", libvirt.VIR_DOMAIN_EVENT_STOPPED: "Stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "Shutdown", libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "PMSuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "Crashed",
}
STOPPED_DETAILS = {0: "Shutdown", 1: "Destroyed", 2: "Crashed", 3: "Migrated", 4: "Saved", 5: "Failed",
                   6: "FromSnapshot"}


class HypervisorError(Exception):
    """A libvirt call failed. ``reason`` is stable and machine-readable:

    ``NotFound`` (no such domain), ``AlreadyExists``, ``InvalidDomain`` (XML rejected),
    ``OperationInvalid`` (wrong state), ``Unsupported``, ``Timeout`` (per-call timeout hit),
    ``ConnectionLost`` (daemon went away; retryable), ``NotOpen``, ``Failed`` (anything else).
    ``code`` is libvirt's ``virErrorNumber`` when one exists.
    """

    def __init__(self, reason: str, message: str, *, code: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.retryable = retryable


class DomainNotFound(HypervisorError):
    """The named domain does not exist (libvirt ``VIR_ERR_NO_DOMAIN``)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__("NotFound", message, code=code)


class HypervisorTimeout(HypervisorError):
    """A libvirt call did not return within its timeout; the worker thread may still be busy."""

    def __init__(self, message: str):
        super().__init__("Timeout", message, retryable=True)


_ERROR_REASONS = {
    libvirt.VIR_ERR_NO_DOMAIN: "NotFound",
    libvirt.VIR_ERR_OPERATION_INVALID: "OperationInvalid",
    libvirt.VIR_ERR_XML_ERROR: "InvalidDomain",
    libvirt.VIR_ERR_XML_DETAIL: "InvalidDomain",
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: "InvalidDomain",
    libvirt.VIR_ERR_NO_SUPPORT: "Unsupported",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "Unsupported",
    libvirt.VIR_ERR_INVALID_ARG: "Unsupported",
    libvirt.VIR_ERR_DOM_EXIST: "AlreadyExists",
    libvirt.VIR_ERR_OPERATION_TIMEOUT: "Timeout",
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: "AgentUnresponsive",
    libvirt.VIR_ERR_RPC: "ConnectionLost",
    libvirt.VIR_ERR_SYSTEM_ERROR: "ConnectionLost",
    libvirt.VIR_ERR_NO_CONNECT: "ConnectionLost",
    libvirt.VIR_ERR_INVALID_CONN: "ConnectionLost",
}


def map_libvirt_error(err: libvirt.libvirtError) -> HypervisorError:
    """Translate a ``libvirtError`` into the handler's own error tree (see ``HypervisorError``)."""
    code = err.get_error_code()
    message = err.get_error_message() or str(err)
    reason = _ERROR_REASONS.get(code, "Failed")
    if reason == "NotFound":
        return DomainNotFound(message, code=code)
    return HypervisorError(reason, message, code=code, retryable=reason in ("ConnectionLost", "Timeout"))


@dataclass(frozen=True)
class DomainInfo:
    """One libvirt domain as the handler sees it.

    ``name`` ``<namespace>_<name>``; ``uuid`` libvirt's UUID string; ``state`` / ``reason``
    KubeVirt names (see module docstring); ``uid`` the VMI uid from the domain's
    ``<metadata><kubevirt xmlns="http://kubevirt.io"><uid>``, None for foreign domains;
    ``domain_id`` libvirt's runtime id (-1 when not running; unchanged while a guest keeps running).
    """

    name: str
    uuid: str
    state: str
    reason: str
    uid: str | None
    domain_id: int

    @property
    def is_active(self) -> bool:
        return self.state not in ("Shutoff", "Crashed", "NoState")


@dataclass(frozen=True)
class NodeInfo:
    """The host behind a connection: ``cpus`` (logical CPUs), ``memory_bytes``, ``cpu_model``
    (e.g. ``Skylake-Client-IBRS``, or the arch when libvirt names none), ``cpu_vendor``,
    ``cpu_features`` (host-model feature names), ``arch``, ``hostname``, ``mhz``."""

    cpus: int
    memory_bytes: int
    cpu_model: str
    cpu_vendor: str
    cpu_features: tuple[str, ...]
    arch: str
    hostname: str
    mhz: int


@dataclass(frozen=True)
class LifecycleEvent:
    """A libvirt domain event: ``event`` is ``Defined``, ``Undefined``, ``Started``, ``Suspended``,
    ``Resumed``, ``Stopped``, ``Shutdown``, ``PMSuspended``, ``Crashed``, ``AgentConnected``,
    ``AgentDisconnected``, or ``Reconnected`` (connection re-opened: resync everything; name empty);
    ``detail`` for ``Stopped`` is ``Shutdown``/``Destroyed``/``Crashed``/``Failed``/... else the raw code."""

    name: str
    uuid: str
    event: str
    detail: str


class EventSubscription:
    """An async iterator of ``LifecycleEvent`` that is subscribed from construction on
    (an async generator would only subscribe at its first ``__anext__`` and miss events)."""

    def __init__(self, subscribers: set):
        self._subscribers = subscribers
        self._queue: asyncio.Queue = asyncio.Queue()
        subscribers.add(self._queue)

    def __aiter__(self) -> "EventSubscription":
        return self

    async def __anext__(self) -> LifecycleEvent:
        event = await self._queue.get()
        if event is None:
            self._subscribers.discard(self._queue)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._subscribers.discard(self._queue)


def compute_flat_stats(stats: dict[str, Any]) -> dict[str, float]:
    """libvirt's per-domain stats record summed over devices: ``vcpu.<n>.time`` ->
    ``vcpu.time``, ``net.<n>.rx.bytes`` -> ``net.rx.bytes``, ``block.<n>.wr.reqs`` ->
    ``block.wr.reqs``; ``cpu.*`` and ``balloon.*`` as they are; counts and names dropped."""
    flat: dict[str, float] = {}
    for key, value in stats.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        parts = key.split(".")
        if parts[0] in ("cpu", "balloon") and len(parts) == 2:
            flat[key] = float(value)
        elif parts[0] in ("vcpu", "net", "block") and len(parts) >= 3 and parts[1].isdigit():
            name = ".".join([parts[0], *parts[2:]])
            flat[name] = flat.get(name, 0.0) + float(value)
    return flat


class _EventThread:
    """libvirt's default event loop on one daemon thread per process (registered before any
    connection that wants events is opened)."""

    _lock = threading.Lock()
    _started = False

    @classmethod
    def ensure_started(cls) -> None:
        with cls._lock:
            if cls._started:
                return
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors surface as exceptions
            libvirt.virEventRegisterDefaultImpl()
            thread = threading.Thread(target=cls._run, name="libvirt-events", daemon=True)
            thread.start()
            cls._started = True

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except libvirt.libvirtError:  # pragma: no cover - keeps the loop alive on odd errors
                log.exception("libvirt event loop iteration failed")


def _parse_metadata_uid(text: str) -> str | None:
    try:
        node = ET.fromstring(text)
    except ET.ParseError:
        return None
    uid = node.find("uid")
    if uid is None:
        uid = node.find(f"{{{KUBEVIRT_METADATA_NS}}}uid")
    return uid.text.strip() if uid is not None and uid.text else None


def _parse_host_cpu(capabilities: str) -> tuple[str, str, tuple[str, ...], str]:
    root = ET.fromstring(capabilities)
    cpu = root.find("./host/cpu")
    if cpu is None:
        return "", "", (), ""
    arch = (cpu.findtext("arch") or "").strip()
    model = (cpu.findtext("model") or "").strip()
    vendor = (cpu.findtext("vendor") or "").strip()
    features = tuple(sorted(f.get("name") for f in cpu.findall("feature") if f.get("name")))
    return model, vendor, features, arch


class Hypervisor:
    """Async facade over one libvirt connection (``qemu:///system``, ``test:///default``, ...).

    ``max_workers`` bounds the threads running libvirt calls; ``call_timeout`` (seconds) bounds
    each call. Methods raise ``HypervisorError`` (``DomainNotFound`` for a missing domain where
    the method needs one). A lost connection is re-opened on the next call and announced to
    event subscribers as a ``Reconnected`` event.
    """

    def __init__(self, uri: str, *, max_workers: int = 4, call_timeout: float = 30.0):
        self.uri = uri
        self.call_timeout = call_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="libvirt")
        self._conn: Any = None
        self._callback_ids: list[int] = []
        self._subscribers: set[asyncio.Queue[LifecycleEvent]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken = False
        self._reopen_lock = asyncio.Lock()

    # -- connection -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect to ``uri`` and subscribe to lifecycle and guest-agent events.

        Raises ``HypervisorError`` (reason ``ConnectionLost`` when the daemon is unreachable).
        """
        _EventThread.ensure_started()
        self._loop = asyncio.get_running_loop()
        await self._run(self._open_blocking)

    def _open_blocking(self) -> None:
        conn = libvirt.open(self.uri)
        try:
            conn.setKeepAlive(5, 3)  # detects a dead daemon on remote URIs
        except libvirt.libvirtError:
            pass  # local drivers (test://) have no keepalive
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass
        ids = [conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)]
        try:
            ids.append(conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                                   self._on_agent, None))
        except libvirt.libvirtError:
            pass  # drivers without guest agents
        self._conn, self._callback_ids, self._broken = conn, ids, False

    async def close(self) -> None:
        """Deregister events, close the connection and the thread pool; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            def close_blocking() -> None:
                for callback_id in self._callback_ids:
                    try:
                        conn.domainEventDeregisterAny(callback_id)
                    except libvirt.libvirtError:
                        pass
                try:
                    conn.unregisterCloseCallback()
                except libvirt.libvirtError:
                    pass
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass
            try:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._pool, close_blocking),
                                       self.call_timeout)
            except asyncio.TimeoutError:
                log.warning("closing libvirt connection %s timed out", self.uri)
        self._callback_ids = []
        self._pool.shutdown(wait=False, cancel_futures=True)
        for queue in list(self._subscribers):
            queue.put_nowait(None)  # type: ignore[arg-type]  # ends the iterators

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self._broken = True
        log.warning("libvirt connection %s closed (reason %s)", self.uri, reason)

    async def _ensure_open(self) -> Any:
        if self._conn is None:
            raise HypervisorError("NotOpen", f"hypervisor connection {self.uri} is not open")
        if self._broken:
            async with self._reopen_lock:
                if self._broken:
                    await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                        self._pool, self._open_blocking), self.call_timeout)
                    self._publish(LifecycleEvent("", "", "Reconnected", ""))
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the pool under the per-call timeout, mapping libvirt errors."""
        loop = asyncio.get_running_loop()
        try:
            # The current (tracing) context goes along: libvirt call spans become children.
            return await asyncio.wait_for(loop.run_in_executor(self._pool, contextvars.copy_context().run, fn, *args),
                                          timeout or self.call_timeout)
        except asyncio.TimeoutError:
            raise HypervisorTimeout(f"libvirt call {getattr(fn, '__name__', fn)} on {self.uri} "
                                    f"took longer than {timeout or self.call_timeout}s") from None
        except libvirt.libvirtError as err:
            mapped = map_libvirt_error(err)
            if mapped.reason == "ConnectionLost":
                self._broken = True
            raise mapped from err

    async def _call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        await self._ensure_open()
        return await self._run(fn, *args, timeout=timeout)

    # -- events -----------------------------------------------------------------------------
    def _publish(self, event: LifecycleEvent) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(event)

    def _deliver(self, event: LifecycleEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._publish, event)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        name = LIFECYCLE_EVENTS.get(event, str(event))
        detail_name = STOPPED_DETAILS.get(detail, str(detail)) if event == libvirt.VIR_DOMAIN_EVENT_STOPPED \
            else str(detail)
        self._deliver(LifecycleEvent(dom.name(), dom.UUIDString(), name, detail_name))

    def _on_agent(self, _conn: Any, dom: Any, state: int, reason: int, _opaque: Any) -> None:
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        self._deliver(LifecycleEvent(dom.name(), dom.UUIDString(),
                                     "AgentConnected" if connected else "AgentDisconnected", str(reason)))

    def events(self) -> "EventSubscription":
        """Subscribe now to every later domain event on this connection, in order, until
        ``close()`` (of the hypervisor or of the subscription). Iterate it with ``async for``
        from the loop that opened the connection; each call is an independent subscription."""
        return EventSubscription(self._subscribers)

    # -- domains ----------------------------------------------------------------------------
    @staticmethod
    def _describe(dom: Any) -> DomainInfo:
        state, reason = dom.state()
        try:
            uid = _parse_metadata_uid(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KUBEVIRT_METADATA_NS))
        except libvirt.libvirtError as err:
            if err.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_SUPPORT,
                                            libvirt.VIR_ERR_INVALID_ARG):
                raise
            uid = None
        return DomainInfo(name=dom.name(), uuid=dom.UUIDString(), state=DOMAIN_STATES.get(state, "NoState"),
                          reason=STATE_REASONS.get(state, {}).get(reason, "Unknown"), uid=uid,
                          domain_id=dom.ID())

    def _span(self, call: str) -> Any:
        """A CLIENT span ``libvirt.<call>`` under the current span (none outside traced work)."""
        return tracing.child_span("virt-handler", f"libvirt.{call}", kind=SpanKind.CLIENT,
                                  attributes={"libvirt.uri": self.uri})

    def _lookup(self, name: str) -> Any:
        return self._conn.lookupByName(name)

    async def define_and_start(self, xml: str, *, paused: bool = False) -> DomainInfo:
        """Define the persistent domain ``xml`` and start it (``paused``: start with CPUs stopped,
        KubeVirt's ``startStrategy: Paused``). When the start fails the definition is removed
        again so nothing is left behind. Raises ``HypervisorError`` (``InvalidDomain``,
        ``AlreadyExists``, ...)."""
        def blocking() -> DomainInfo:
            with self._span("defineXML"):
                dom = self._conn.defineXML(xml)
            try:
                if paused:
                    try:
                        with self._span("createWithFlags"):
                            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
                    except libvirt.libvirtError as err:
                        if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                            raise
                        with self._span("create"):
                            dom.create()  # drivers without START_PAUSED (test://)
                        with self._span("suspend"):
                            dom.suspend()
                else:
                    with self._span("create"):
                        dom.create()
            except libvirt.libvirtError:
                try:
                    dom.undefine()
                except libvirt.libvirtError:
                    pass
                raise
            return self._describe(dom)
        return await self._call(blocking)

    async def get_domain(self, name: str) -> DomainInfo | None:
        """The domain called ``name``, or None when there is none."""
        def blocking() -> DomainInfo | None:
            try:
                return self._describe(self._lookup(name))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
        return await self._call(blocking)

    async def list_domains(self) -> list[DomainInfo]:
        """Every domain on the connection, running or only defined (foreign ones have ``uid`` None)."""
        def blocking() -> list[DomainInfo]:
            infos = []
            for dom in self._conn.listAllDomains(0):
                try:
                    infos.append(self._describe(dom))
                except libvirt.libvirtError as err:
                    if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # vanished while listing
                        raise
            return infos
        return await self._call(blocking)

    async def get_domain_xml(self, name: str) -> str:
        """The live XML description of domain ``name``. Raises ``DomainNotFound``."""
        return await self._call(lambda: self._lookup(name).XMLDesc(0))

    async def is_agent_connected(self, name: str) -> bool:
        """Whether the guest agent channel ``org.qemu.guest_agent.0`` of a running domain is
        connected (its live XML says ``state='connected'``). False when there is no such channel.
        Raises ``DomainNotFound``."""
        def blocking() -> bool:
            root = ET.fromstring(self._lookup(name).XMLDesc(0))
            for target in root.findall("./devices/channel/target"):
                if target.get("name") == "org.qemu.guest_agent.0":
                    return target.get("state") == "connected"
            return False
        return await self._call(blocking)

    async def agent_command(self, name: str, command: str, arguments: dict | None = None, *,
                            timeout: int = 5) -> Any:
        """Run QEMU guest agent ``command`` (e.g. ``guest-get-osinfo``) in domain ``name`` and
        return its ``return`` value. Raises ``DomainNotFound``, ``HypervisorError`` with reason
        ``AgentUnresponsive`` (no agent, or it did not answer within ``timeout`` s) or
        ``Unsupported`` (drivers without agents, e.g. ``test://``)."""
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}

        def blocking() -> Any:
            answer = libvirt_qemu.qemuAgentCommand(self._lookup(name), json.dumps(request), timeout, 0)
            return json.loads(answer).get("return")
        return await self._call(blocking, timeout=self.call_timeout + timeout)

    async def domain_interfaces(self, name: str) -> list[tuple[str, str]]:
        """``(alias, mac)`` of each ``<interface>`` in the live domain XML (alias without the
        ``ua-`` prefix KubeVirt gives user-defined devices). Raises ``DomainNotFound``."""
        def blocking() -> list[tuple[str, str]]:
            root = ET.fromstring(self._lookup(name).XMLDesc(0))
            found = []
            for iface in root.findall("./devices/interface"):
                alias = (iface.find("alias").get("name") if iface.find("alias") is not None else "") or ""
                mac = iface.find("mac").get("address") if iface.find("mac") is not None else ""
                found.append((alias.removeprefix("ua-"), mac or ""))
            return found
        return await self._call(blocking)

    async def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI power button where the driver supports choosing it).

        A domain that is not running is left alone. Raises ``DomainNotFound``.
        """
        def blocking() -> None:
            dom = self._lookup(name)
            if not dom.isActive():
                return
            try:
                dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                dom.shutdown()
        await self._call(blocking)

    async def destroy(self, name: str) -> None:
        """Stop the domain immediately (libvirt ``destroy``); a stopped domain is left alone.
        Raises ``DomainNotFound``."""
        def blocking() -> None:
            dom = self._lookup(name)
            if dom.isActive():
                with self._span("destroy"):
                    dom.destroy()
        await self._call(blocking)

    async def undefine(self, name: str) -> None:
        """Remove the domain's definition (with managed save, snapshot, checkpoint metadata and
        NVRAM); a running domain becomes transient and disappears when it stops. Missing -> no-op."""
        def blocking() -> None:
            try:
                dom = self._lookup(name)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                raise
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                     | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            for attempt in (flags, libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, 0):
                try:
                    dom.undefineFlags(attempt) if attempt else dom.undefine()
                    return
                except libvirt.libvirtError as err:
                    if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                        return
                    if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG or attempt == 0:
                        raise
        await self._call(blocking)

    async def pause(self, name: str) -> None:
        """Suspend the guest's vCPUs; already paused -> no-op. Raises ``DomainNotFound``,
        ``HypervisorError(OperationInvalid)`` when it is not running."""
        def blocking() -> None:
            dom = self._lookup(name)
            state, _ = dom.state()
            if state == libvirt.VIR_DOMAIN_PAUSED:
                return
            if state not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                raise HypervisorError("OperationInvalid", f"domain {name} is not running")
            dom.suspend()
        await self._call(blocking)

    async def resume(self, name: str) -> None:
        """Resume a paused guest; running -> no-op. Raises ``DomainNotFound``,
        ``HypervisorError(OperationInvalid)`` when it is not paused or running."""
        def blocking() -> None:
            dom = self._lookup(name)
            state, _ = dom.state()
            if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                return
            if state != libvirt.VIR_DOMAIN_PAUSED:
                raise HypervisorError("OperationInvalid", f"domain {name} is not paused")
            dom.resume()
        await self._call(blocking)

    async def reboot(self, name: str) -> None:
        """Soft reboot: ask the guest to reboot (guest agent or ACPI, libvirt's default choice).
        Raises ``DomainNotFound``, ``HypervisorError(OperationInvalid)`` when not running."""
        def blocking() -> None:
            dom = self._lookup(name)
            if dom.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                raise HypervisorError("OperationInvalid", f"domain {name} is not running")
            dom.reboot(0)
        await self._call(blocking)

    async def domain_stats(self) -> dict[str, dict[str, float]]:
        """Statistics of every running domain (libvirt ``getAllDomainStats``): domain name ->
        flat fields ``cpu.time``/``cpu.user``/``cpu.system``/``vcpu.time`` (ns), ``net.rx.bytes``,
        ``net.tx.bytes``, ``net.rx.pkts``, ``net.tx.pkts``, ``block.rd.bytes``, ``block.wr.bytes``,
        ``block.rd.reqs``, ``block.wr.reqs`` (summed over vCPUs, NICs, disks) and ``balloon.*``
        (KiB). Drivers without statistics give an empty dict."""
        def blocking() -> dict[str, dict[str, float]]:
            try:
                records = self._conn.getAllDomainStats(0, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
            except libvirt.libvirtError as err:
                if err.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    return {}
                raise
            return {dom.name(): compute_flat_stats(stats) for dom, stats in records}
        return await self._call(blocking)

    async def node_info(self) -> NodeInfo:
        """The host's CPUs, memory and CPU model/vendor/features (libvirt ``getInfo`` and capabilities)."""
        def blocking() -> NodeInfo:
            model_arch, memory_mib, cpus, mhz = self._conn.getInfo()[:4]
            model, vendor, features, arch = _parse_host_cpu(self._conn.getCapabilities())
            return NodeInfo(cpus=int(cpus), memory_bytes=int(memory_mib) * 2**20, cpu_model=model or model_arch,
                            cpu_vendor=vendor, cpu_features=features, arch=arch or model_arch,
                            hostname=self._conn.getHostname(), mhz=int(mhz))
        return await self._call(blocking)
