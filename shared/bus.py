"""The one wrapper around a nats-py connection (with :mod:`shared.store`, the only importer of ``nats``).

Owns: connecting with explicit limits (fail fast at start — a dead server gives one readable
``ServiceUnavailable`` line instead of nats-py's default minute of retries and tracebacks, see
ecosystem-notes §1.6 — then reconnect patiently once running), one-line error logging, mapping
nats-py failures into :mod:`shared.errors`, and W3C trace context in message headers (injected on
publish/request, extracted on receive, spans per the OTel messaging conventions — only while
:mod:`shared.tracing` is on). Subjects and payload schemas live elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from shared import tracing
from shared.errors import ServiceUnavailable

log = logging.getLogger("kubevirt.bus")

#: Initial connect: tries per server before giving up (with ``CONNECT_RETRY_WAIT`` s between).
CONNECT_ATTEMPTS = 2
CONNECT_RETRY_WAIT = 0.2
#: After the first connect: -1 = never stop reconnecting (a control plane outlives a server restart).
RECONNECT_ATTEMPTS = -1
RECONNECT_WAIT = 0.25

#: nats-server's -ERR for a refused publish or subscription (nats-py hands it to the error
#: callback lower-cased): ``permissions violation for publish to "<subject>"``.
_PERMISSIONS_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)


def parse_permissions_violation(text: str) -> tuple[str, str] | None:
    """``(operation, subject)`` of a nats-server permissions violation message (operation
    ``publish`` or ``subscription``; the subject as the client library reports it, which may be
    lower-cased), None for any other message."""
    match = _PERMISSIONS_VIOLATION.search(text)
    return (match.group(1).lower(), match.group(2)) if match else None


class Bus:
    """A connected NATS client. Messages are ``nats.aio.msg.Msg`` (``.subject``, ``.data``,
    ``.headers: dict[str, str] | None``, ``await .respond(bytes)``)."""

    def __init__(self, nc: Client, name: str, reconnect_listeners: list[Callable[[], None]] | None = None) -> None:
        self._nc = nc
        self.name = name
        self._reconnect_listeners = reconnect_listeners if reconnect_listeners is not None else []
        self._permission_listeners: list[Callable[[str, str], None]] = []
        #: how many times the connection was re-established (watchers compare it to resubscribe)
        self.reconnects = 0

    def add_reconnect_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (plain function, must not block) after every reconnect."""
        self._reconnect_listeners.append(listener)

    def notify_reconnected(self) -> None:
        self.reconnects += 1
        for listener in list(self._reconnect_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener must not break the connection callback
                log.exception("reconnect listener failed")

    def add_permission_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(operation, subject)`` (plain function) when the server refuses a
        publish or subscription of this connection (:func:`parse_permissions_violation`)."""
        self._permission_listeners.append(listener)

    def notify_permission_violation(self, operation: str, subject: str) -> None:
        for listener in list(self._permission_listeners):
            try:
                listener(operation, subject)
            except Exception:  # noqa: BLE001 - a listener must not break the error callback
                log.exception("permission listener failed")

    @property
    def client(self) -> Client:
        """The raw nats-py client, for :mod:`shared.store` only."""
        return self._nc

    @property
    def is_connected(self) -> bool:
        return self._nc.is_connected

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """Fire-and-forget publish (buffered while reconnecting, up to nats-py's pending size)."""
        if tracing.has_current_span():
            with _messaging_span(self.name, "publish", subject, len(payload)):
                await self._publish(subject, payload, tracing.inject_headers(headers))
        else:
            await self._publish(subject, payload, headers)

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
        try:
            await self._nc.publish(subject, payload, headers=headers)
        except nats.errors.Error as err:
            raise ServiceUnavailable(f"NATS publish to {subject} failed: {describe_nats_error(err)}") from err

    async def subscribe(
        self,
        subject: str,
        queue: str | None = None,
        cb: Callable[[Msg], Awaitable[None]] | None = None,
        *,
        pending_msgs_limit: int = 65536,
    ) -> Subscription:
        """Subscribe (optionally in a queue group). Without ``cb`` iterate ``sub.messages`` or
        ``await sub.next_msg(timeout)``; ``await sub.unsubscribe()`` to stop. With tracing on,
        each ``cb`` call runs in a CONSUMER span (SERVER for requests) continuing the sender's trace."""
        if cb is not None and tracing.is_enabled():
            cb = _traced_callback(self.name, cb)
        return await self._nc.subscribe(subject, queue=queue or "", cb=cb, pending_msgs_limit=pending_msgs_limit)

    async def request(
        self, subject: str, payload: bytes, timeout: float = 2.0, headers: dict[str, str] | None = None
    ) -> Msg:
        """Request/reply. Raises ServiceUnavailable when nobody answers or on timeout (seconds)."""
        if tracing.has_current_span():
            with _messaging_span(self.name, "request", subject, len(payload)):
                return await self._request(subject, payload, timeout, tracing.inject_headers(headers))
        return await self._request(subject, payload, timeout, headers)

    async def _request(self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None) -> Msg:
        try:
            return await self._nc.request(subject, payload, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError as err:
            raise ServiceUnavailable(f"no service answers on {subject}") from err
        except (nats.errors.TimeoutError, asyncio.TimeoutError) as err:
            raise ServiceUnavailable(f"request on {subject} timed out after {timeout}s") from err

    def jetstream(self, timeout: float = 5.0) -> JetStreamContext:
        """JetStream context (``timeout`` s per JetStream API call)."""
        return self._nc.jetstream(timeout=timeout)

    async def apply_bounded_stream(self, name: str, subjects: list[str], *, max_bytes: int,
                                   max_age_seconds: float, replicas: int = 1) -> None:
        """Create the JetStream stream ``name`` on ``subjects`` (file storage, ``replicas``
        copies on a NATS cluster, bounded by ``max_bytes`` bytes and ``max_age_seconds`` s,
        oldest messages dropped first), or update the bounds of the stream that exists. Raises
        nats-py's errors when neither works (e.g. more replicas than servers)."""
        config = StreamConfig(name=name, subjects=subjects, max_bytes=max_bytes, max_age=max_age_seconds,
                              storage=StorageType.FILE, discard=DiscardPolicy.OLD, num_replicas=replicas)
        js = self.jetstream()
        try:
            await js.add_stream(config)
        except Exception:  # noqa: BLE001 - exists with other bounds: update it
            await js.update_stream(config)

    async def read_stream_subject(self, stream: str, subject: str, *, timeout: float = 2.0) -> list[bytes]:
        """The bodies of every message of ``stream`` on ``subject``, oldest first ([] when there
        is none or no such stream). ``timeout`` (s) bounds the wait for each message."""
        js = self.jetstream()
        try:
            info = await js.stream_info(stream, subjects_filter=subject)
        except nats.js.errors.NotFoundError:
            return []
        count = (info.state.subjects or {}).get(subject, 0)
        if not count:
            return []
        sub = await js.subscribe(subject, ordered_consumer=True)
        bodies: list[bytes] = []
        try:
            while len(bodies) < count:
                msg = await sub.next_msg(timeout=timeout)
                bodies.append(msg.data)
        finally:
            await sub.unsubscribe()
        return bodies

    async def flush(self, timeout: float = 2.0) -> None:
        await self._nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py says int; seconds may be fractional

    async def close(self) -> None:
        """Close the connection (pending outbound messages are flushed first)."""
        if not self._nc.is_closed:
            await self._nc.close()


def compute_subject_template(subject: str) -> str:
    """Low-cardinality form of ``subject`` for span names (OTel messaging conventions: no node,
    object or session names): ``kubevirt.v1.handler.node-1.command`` ->
    ``kubevirt.v1.handler.*.command``, ``kubevirt.v1.domain.n.ns.vm`` -> ``kubevirt.v1.domain.*``,
    inboxes -> ``_INBOX.*``."""
    tokens = subject.split(".")
    if tokens[0] == "_INBOX":
        return "_INBOX.*"
    # the family token follows the prefix (``kubevirt`` or a versioned ``kubevirt.v1``)
    head = 3 if len(tokens) > 2 and re.fullmatch(r"v\d+", tokens[1]) else 2
    if len(tokens) <= head:
        return subject
    if tokens[head - 1] in ("handler", "console") and len(tokens) >= head + 2:
        return ".".join(tokens[:head] + ["*"] * (len(tokens) - head - 1) + tokens[-1:])
    return ".".join(tokens[:head]) + ".*"


def _messaging_span(client: str, operation: str, subject: str, size: int) -> Any:
    """PRODUCER span for a publish, CLIENT span for a request (OTel messaging span kinds)."""
    from opentelemetry.trace import SpanKind
    template = compute_subject_template(subject)
    kind = SpanKind.PRODUCER if operation == "publish" else SpanKind.CLIENT
    return tracing.get_tracer(_service_of(client)).start_as_current_span(
        f"{operation} {template}", kind=kind,
        attributes={"messaging.system": "nats", "messaging.destination.name": template,
                    "messaging.operation.type": "send", "messaging.operation.name": operation,
                    "messaging.client.id": client, "messaging.message.body.size": size})


def _service_of(client: str) -> str:
    """Service name of a connection name (``virt-controller-abc`` -> ``virt-controller``)."""
    for service in ("virt-api", "virt-controller", "scheduler-bridge", "virt-handler", "virtctl"):
        if client.startswith(service):
            return service
    return client or "nats-client"


def _traced_callback(client: str, cb: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """Wrap a subscription callback in a span continuing the message's trace: parented on the
    sender for a core NATS message, only *linked* to it for a JetStream redelivery (the
    delivery is not a new child of the original publish)."""
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    async def traced(msg: Msg) -> None:
        parent = tracing.extract_context(msg.headers)
        if parent is None:
            await cb(msg)
            return
        links = None
        redelivered = False
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            try:
                redelivered = msg.metadata.num_delivered > 1
            except Exception:  # noqa: BLE001 - not a well-formed JetStream reply subject
                redelivered = False
        if redelivered:
            links = [Link(trace.get_current_span(parent).get_span_context())]
            parent = None
        template = compute_subject_template(msg.subject)
        kind = SpanKind.SERVER if msg.reply and not msg.reply.startswith("$JS.") else SpanKind.CONSUMER
        with tracing.get_tracer(_service_of(client)).start_as_current_span(
                f"process {template}", context=parent, kind=kind, links=links,
                attributes={"messaging.system": "nats", "messaging.destination.name": template,
                            "messaging.operation.type": "process", "messaging.client.id": client,
                            "messaging.message.body.size": len(msg.data or b"")}):
            await cb(msg)
    return traced


def describe_nats_error(err: BaseException) -> str:
    """A one-line description of a nats-py exception (its class name when the message is empty)."""
    text = str(err).strip().replace("\n", " ")
    return text if text and text != "nats: " else type(err).__name__


async def connect(
    servers: list[str],
    *,
    name: str,
    connect_timeout: float = 2.0,
    reconnect_attempts: int = RECONNECT_ATTEMPTS,
    reconnect_wait: float = RECONNECT_WAIT,
    on_reconnected: Callable[[], None] | None = None,
    credentials: Path | None = None,
    tls_ca: Path | None = None,
) -> Bus:
    """Connect to NATS; ``name`` is the client name shown by the server (``/connz``).

    ``credentials`` is a credentials file of :mod:`shared.nats_auth` (user and password; without
    it the connection is anonymous); ``tls_ca`` the PEM file of the CA the server's certificate
    must chain to (TLS then, also for ``nats://`` URLs; ``tls://`` URLs need it). A credentials
    file that cannot be read is a ``ServiceUnavailable`` naming it.

    Fails fast: each server is tried ``CONNECT_ATTEMPTS`` times, each attempt bounded by
    ``connect_timeout`` seconds, then ``ServiceUnavailable("cannot connect to NATS at ...")``.
    Once connected, reconnects up to ``reconnect_attempts`` times (-1 = forever) every
    ``reconnect_wait`` s; subscriptions are restored by nats-py. Errors are logged as one line.
    ``on_reconnected`` (plain function) is called after each reconnect, like listeners added
    with :meth:`Bus.add_reconnect_listener`.
    """
    if not servers:
        raise ServiceUnavailable("no NATS server URL given")
    auth: dict[str, Any] = {}
    if credentials is not None:
        from shared.nats_auth import read_credentials  # here: nats_auth imports the store, which imports us

        try:
            creds = read_credentials(credentials)
        except (OSError, ValueError) as err:
            raise ServiceUnavailable(f"cannot read NATS credentials: {err}") from err
        auth.update(user=creds.user, password=creds.password)
    if tls_ca is not None:
        try:
            auth["tls"] = ssl.create_default_context(cafile=str(tls_ca))
        except (OSError, ssl.SSLError) as err:
            raise ServiceUnavailable(f"cannot load the NATS CA {tls_ca}: {err}") from err

    last_error: list[str] = []

    async def error_cb(err: Exception) -> None:
        text = describe_nats_error(err)
        log.warning("nats %s: %s", name, text)
        # the server's refusal or a TLS failure, not the broken pipe that follows it
        if not last_error or isinstance(err, (nats.errors.Error, ssl.SSLError)):
            last_error[:] = [text]
        violation = parse_permissions_violation(text)
        if violation is not None and holder:
            holder[0].notify_permission_violation(*violation)

    async def disconnected_cb() -> None:
        log.info("nats %s: disconnected", name)

    listeners: list[Callable[[], None]] = [on_reconnected] if on_reconnected else []
    holder: list[Bus] = []

    async def reconnected_cb() -> None:
        log.info("nats %s: reconnected to %s", name, nc.connected_url.netloc if nc.connected_url else "?")
        if holder:
            holder[0].notify_reconnected()

    nc = Client()
    # nats-py may wait forever after a failed TLS handshake (certificate not trusted): bound the
    # whole first connect by what its attempts may take
    limit = len(servers) * CONNECT_ATTEMPTS * (connect_timeout + CONNECT_RETRY_WAIT) + 1.0
    try:
        await asyncio.wait_for(nc.connect(
            servers=servers,
            name=name,
            connect_timeout=connect_timeout,  # type: ignore[arg-type]  # nats-py says int; seconds may be fractional
            max_reconnect_attempts=CONNECT_ATTEMPTS,
            reconnect_time_wait=CONNECT_RETRY_WAIT,  # type: ignore[arg-type]  # (as above)
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
            allow_reconnect=True,
            **auth,
        ), limit)
    except (nats.errors.Error, OSError, asyncio.TimeoutError) as err:
        try:
            await nc.close()
        except Exception:  # noqa: BLE001 - already failing; the close is best effort
            pass
        # the server's own reason (authorization violation, TLS failure) says more than
        # nats-py's final "no servers available"
        reason = last_error[0] if last_error else describe_nats_error(err)
        raise ServiceUnavailable(f"cannot connect to NATS at {', '.join(servers)}: {reason}") from err
    # From now on a lost server is waited for, not given up on after a second.
    nc.options["max_reconnect_attempts"] = reconnect_attempts
    nc.options["reconnect_time_wait"] = reconnect_wait
    bus = Bus(nc, name, listeners)
    holder.append(bus)
    return bus
