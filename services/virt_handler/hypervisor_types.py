"""The handler's view of libvirt, free of libvirt: errors, domain/node/event records (pure).

What the gateway (``services.virt_handler.hypervisor``) hands out and what the decisions
(``sync_decision``, ``status``, ``commands``) read. States and reasons carry KubeVirt's names
(``pkg/virt-launcher/virtwrap/api``: ``Running``, ``Paused``, ``Shutoff``...; ``Shutdown``,
``Destroyed``, ``Crashed``, ``User``, ``IOError``...). Nothing here imports ``libvirt``, so
pure modules and their tests can use these types without the bindings.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

KUBEVIRT_METADATA_NS = "http://kubevirt.io"

#: domain states in which a guest is not running (KubeVirt's ``Shutoff``/``Crashed``/``NoState``)
INACTIVE_STATES = frozenset({"Shutoff", "Crashed", "NoState"})


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
        return self.state not in INACTIVE_STATES


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

    def __init__(self, subscribers: set[asyncio.Queue[LifecycleEvent | None]]):
        self._subscribers = subscribers
        self._queue: asyncio.Queue[LifecycleEvent | None] = asyncio.Queue()
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



def parse_metadata_uid(text: str) -> str | None:
    try:
        node = ET.fromstring(text)
    except ET.ParseError:
        return None
    uid = node.find("uid")
    if uid is None:
        uid = node.find(f"{{{KUBEVIRT_METADATA_NS}}}uid")
    return uid.text.strip() if uid is not None and uid.text else None


def parse_host_cpu(capabilities: str) -> tuple[str, str, tuple[str, ...], str]:
    root = ET.fromstring(capabilities)
    cpu = root.find("./host/cpu")
    if cpu is None:
        return "", "", (), ""
    arch = (cpu.findtext("arch") or "").strip()
    model = (cpu.findtext("model") or "").strip()
    vendor = (cpu.findtext("vendor") or "").strip()
    features = tuple(sorted(name for f in cpu.findall("feature") if (name := f.get("name"))))
    return model, vendor, features, arch

