"""JetStream publishes that wait for the stream's acknowledgement, over one reply subscription.

What ``nats.js.JetStreamContext.publish`` does (publish with a reply subject, wait for the
``PubAck`` or the error JetStream answers with, "no responders" when no stream holds the
subject), made cheap enough for the store's every write: replies come to one wildcard inbox of
this connection and find their waiting future by a counter token (nats-py draws random bytes
from the OS for each request), the ack is decoded by msgspec into the two fields the store reads,
and deadlines are checked by one timer sweep for all pending publishes instead of a timer per
publish. Errors are nats-py's own: ``nats.js.errors.APIError`` (``err_code`` 10071 = wrong last
sequence, the failed compare-and-swap), ``nats.js.errors.NoStreamResponseError``,
``nats.errors.TimeoutError``; and :class:`PublishNotPermitted` when the server refused the
publish itself (the connection's user may not publish to the subject: nats-server answers with
an asynchronous -ERR, never with an ack, so without it the publish would only time out).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared.bus import Bus

_SWEEP = 0.1  # s between deadline checks while publishes are pending


class _Ack(msgspec.Struct):
    """The parts of JetStream's publish answer the store reads."""

    seq: int = 0
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_Ack).decode


class PublishNotPermitted(Exception):
    """nats-server refused to take the publish: this connection's user may not publish to
    ``subject`` (its permissions, :mod:`shared.nats_auth`)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"this NATS user may not publish to {subject}")
        self.subject = subject


class AckedPublisher:
    """Publishes to JetStream-captured subjects and waits for their acks (one connection)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._prefix = ""
        self._sub: Subscription | None = None
        self._subscribing: asyncio.Lock | None = None
        self._next = 0
        self._pending: dict[str, tuple[asyncio.Future[Msg], float, str]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def _on_permission_violation(self, operation: str, subject: str) -> None:
        # the -ERR names the subject (lower-cased by nats-py), not the publish: fail every
        # pending publish to it
        if operation != "publish":
            return
        for token, (future, _, pending_subject) in list(self._pending.items()):
            if pending_subject.lower() == subject.lower():
                del self._pending[token]
                if not future.done():
                    future.set_exception(PublishNotPermitted(pending_subject))

    async def _subscribe(self) -> None:
        if self._subscribing is None:
            self._subscribing = asyncio.Lock()
        async with self._subscribing:
            if self._sub is None:
                nc = self.bus.client
                prefix = nc.new_inbox() + "."
                self._sub = await nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix
                self.bus.add_permission_listener(self._on_permission_violation)

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._pending.pop(msg.subject[len(self._prefix):], None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for token, (future, deadline, _) in list(self._pending.items()):
            if deadline <= now:
                del self._pending[token]
                if not future.done():
                    future.set_exception(nats.errors.TimeoutError())
        self._arm()

    def _arm(self) -> None:
        if self._sweeper is None and self._pending:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP, self._sweep)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str], timeout: float) -> int:
        """Publish and return the stream sequence the server stored the message at. Raises
        nats-py's APIError (JetStream refused it), NoStreamResponseError, TimeoutError (no
        answer within ``timeout`` s) or connection errors, :class:`PublishNotPermitted`."""
        if self._sub is None:
            await self._subscribe()
        self._next += 1
        token = f"{self._next:x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = (future, loop.time() + timeout, subject)
        self._arm()
        try:
            await self.bus.client.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise nats.js.errors.NoStreamResponseError
        ack = _decode_ack(msg.data)
        if ack.error is not None:
            raise nats.js.errors.APIError.from_error(ack.error)
        return ack.seq
