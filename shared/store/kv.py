"""The JetStream KV layer: raw records of one bucket per resource, with CAS, snapshots and tails.

Owns every nats-py call of the store (``shared.store`` and ``shared.bus`` are the only importers of
``nats``). Buckets are ordinary KV buckets (stream ``KV_<bucket>``, subjects ``$KV.<bucket>.<key>``,
``allow_direct`` off so reads go to the stream leader: read-your-writes, ecosystem-notes §2.2), but
writes are published directly so that

* every write carries ``Nats-Expected-Last-Subject-Sequence`` (create = 0 or the delete marker's
  revision, update = the revision read) — the server-side compare-and-swap — and that header is
  stored with the message, so each record knows its predecessor (``prev_revision``); a watcher uses
  it to notice a revision it never saw (history compacted under it);
* a delete marker (``KV-Operation: DEL``, as nats-py and other KV clients read it) carries the last
  state of the object as payload, so DELETED watch events can show it;
* every write has a ``Nats-Msg-Id``: a write retried after a timeout (server restart, leader
  election) is de-duplicated by the server while it runs; across a restart the CAS refuses the
  retry, and the writer recognises its own earlier message by that id (then answers with its
  revision instead of a false conflict) while it is the key's latest record; an object create
  also knows its object by uid once others have updated it (:mod:`shared.store.own_create`).

Object semantics (metadata, resourceVersion strings, errors in Kubernetes' words) are in
:mod:`shared.store.objectstore`; this module speaks revisions (``int``) and bytes. What a record
is: :mod:`shared.store.records`; snapshots and tails through consumers:
:mod:`shared.store.consumers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors

from shared import metrics
from shared.bus import Bus, describe_nats_error
from shared.errors import Forbidden, InternalError, RequestTooLarge, ServiceUnavailable
from shared.store.acks import AckedPublisher, PublishNotPermitted
from shared.store.consumers import StreamReader
from shared.store.keys import stream_name, subject_prefix
from shared.store.records import (
    CREATE_MARK,
    EXPECTED_LAST,
    KV_OP,
    MSG_ID,
    Compacted,
    KvRecord,
    Progress,
    WrongLastRevision,
    parse_record,
)

log = logging.getLogger("kubevirt.store.kv")

_WRONG_LAST_SEQUENCE = (10071, 10164)

T = TypeVar("T")

__all__ = ["Compacted", "KvLayer", "KvRecord", "Progress", "WrongLastRevision"]



#: Failures worth retrying until the operation's deadline: the server or the connection is busy
#: or away for a moment (a JetStream leader election, a reconnect, a full outbound buffer).
_TRANSIENT: tuple[type[Exception], ...] = (
    TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
)

_REQUEST_OK = metrics.NATS_REQUEST_DURATION.labels("ok")
_REQUEST_ERROR = metrics.NATS_REQUEST_DURATION.labels("error")
_OPERATION_CHILDREN: dict[tuple[str, str], Any] = {}


def _operation_child(operation: str, outcome: str) -> Any:
    """The ``kubevirt_store_operation_duration_seconds`` child of (operation, outcome), looked
    up once (prometheus_client's ``labels()`` takes a lock and builds a tuple per call)."""
    child = _OPERATION_CHILDREN.get((operation, outcome))
    if child is None:
        child = _OPERATION_CHILDREN[(operation, outcome)] = metrics.STORE_OPERATION_DURATION.labels(
            operation, outcome)
    return child


class KvLayer:
    """Record-level access to the store's buckets over one :class:`shared.bus.Bus`.

    ``op_timeout`` (s) bounds each call including retries after timeouts; a call still failing
    then raises ``ServiceUnavailable``. ``replicas``/``history`` apply to buckets made here.
    """

    def __init__(self, bus: Bus, *, replicas: int = 1, history: int = 10, op_timeout: float = 10.0,
                 request_timeout: float = 2.0) -> None:
        self.bus = bus
        self.replicas = replicas
        self.history = history
        self.op_timeout = op_timeout
        self.request_timeout = request_timeout
        self._js = bus.jetstream(timeout=request_timeout)
        self._ready: set[str] = set()
        self._ready_lock = asyncio.Lock()
        self._reconnected: asyncio.Future[None] | None = None
        self._reader = StreamReader(self)
        self._acks = AckedPublisher(bus)
        # Nats-Msg-Id of writes: random per layer + a counter (unique without a urandom per write)
        self._id_prefix = uuid.uuid4().hex[:20] + "-"
        self._writes = 0
        bus.add_reconnect_listener(self._on_reconnected)

    def _on_reconnected(self) -> None:
        # the server may have come back without our buckets (new data dir): check them again
        self._ready.clear()
        # wake calls whose request went out on the dead connection; they retry at once
        waiting, self._reconnected = self._reconnected, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _attempt(self, call: Callable[[], Awaitable[T]], *, inline: bool = False) -> T:
        """One try of ``call``, abandoned (TimeoutError) if the connection is re-established
        meanwhile: its request or reply was lost with the old connection.

        ``call`` runs in a task of its own, so the caller's cancellation always ends the caller
        even when nats-py's ``asyncio.wait_for`` swallows a cancel that meets a reply (CPython
        gh-86296). ``inline=True`` (for calls without ``wait_for``: the store's acked publishes)
        runs it in the caller's task instead; a reconnect then cancels that task and the cancel
        becomes the TimeoutError here."""
        if self._reconnected is None:
            self._reconnected = asyncio.get_running_loop().create_future()
        reconnected = self._reconnected
        current = asyncio.current_task()
        if current is None:
            raise RuntimeError("KvLayer calls need a running task")
        runner = current if inline else asyncio.ensure_future(call())
        state = [False, False]  # [finished, abandoned]

        def abandon(_: asyncio.Future[None]) -> None:
            if not state[0]:
                state[1] = True
                runner.cancel()

        reconnected.add_done_callback(abandon)
        started = time.perf_counter()
        try:
            result = await (call() if inline else runner)  # a cancel of the caller cancels the call too
        except asyncio.CancelledError:
            if state[1] and (not inline or current.uncancel() == 0) and not current.cancelling():
                raise TimeoutError from None  # our cancel, nobody else's: the request was lost
            raise
        except BaseException:
            _REQUEST_ERROR.observe(time.perf_counter() - started)
            raise
        finally:
            state[0] = True
            reconnected.remove_done_callback(abandon)
        if state[1] and inline:
            current.uncancel()  # the call finished anyway (its code absorbed our cancel)
        _REQUEST_OK.observe(time.perf_counter() - started)
        return result

    # -- helpers -----------------------------------------------------------------------------
    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]], *, inline: bool = False) -> T:
        """:meth:`_retrying_unmeasured`, timed in ``kubevirt_store_operation_duration_seconds``
        (label ``operation`` = first word of ``what``: get, write, list, info, create, ...)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._retrying_unmeasured(what, call, inline=inline)
            outcome = "ok"
            return result
        finally:
            _operation_child(what.split(" ", 1)[0], outcome).observe(time.perf_counter() - started)

    async def _retrying_unmeasured(self, what: str, call: Callable[[], Awaitable[T]], *,
                                   inline: bool = False) -> T:
        """Run ``call``; retry transient failures (timeouts, no responders, leader elections)
        until ``op_timeout``. The last failure becomes ServiceUnavailable."""
        deadline = time.monotonic() + self.op_timeout
        delay = 0.05
        while True:
            failure: Exception
            try:
                return await self._attempt(call, inline=inline)
            except _TRANSIENT as err:
                failure = err
            except PublishNotPermitted as err:
                raise Forbidden(f"NATS refused {what}: {err}") from err
            except nats.errors.MaxPayloadError as err:
                raise RequestTooLarge(
                    f"the object is larger than the {self.bus.client.max_payload} bytes NATS accepts in one message"
                ) from err
            except nats.js.errors.APIError as err:
                if err.code != 503:
                    raise InternalError(f"JetStream refused {what}: {describe_nats_error(err)}") from err
                failure = err
            if self.bus.client.is_closed:
                raise ServiceUnavailable(f"NATS connection closed during {what}") from failure
            if time.monotonic() + delay > deadline:
                raise ServiceUnavailable(
                    f"NATS JetStream unavailable during {what}: {describe_nats_error(failure)}"
                ) from failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- buckets -----------------------------------------------------------------------------
    async def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket if missing (idempotent, cached per process)."""
        if bucket in self._ready:
            return
        async with self._ready_lock:
            if bucket in self._ready:
                return

            async def make() -> None:
                try:
                    await self._js.stream_info(stream_name(bucket))
                    return
                except nats.js.errors.NotFoundError:
                    pass
                try:
                    await self._js.create_key_value(
                        bucket=bucket, history=self.history, replicas=self.replicas, direct=False
                    )
                except nats.js.errors.BadRequestError:
                    # made concurrently by another process with the same name
                    await self._js.stream_info(stream_name(bucket))

            await self._retrying(f"create bucket {bucket}", make)
            self._ready.add(bucket)

    async def list_buckets(self, prefix: str) -> list[str]:
        """Names of existing buckets starting with ``prefix``."""
        names: list[str] = []

        async def fetch() -> None:
            names.clear()
            offset = 0
            while True:
                infos = await self._js.streams_info(offset=offset)
                if not infos:
                    return
                for info in infos:
                    if info.config.name and info.config.name.startswith(f"KV_{prefix}"):
                        names.append(info.config.name[3:])
                offset += len(infos)

        await self._retrying("list buckets", fetch)
        return names

    async def stream_bounds(self, bucket: str) -> tuple[int, int]:
        """``(first_seq, last_seq)`` of the bucket's stream (first = last + 1 when empty)."""
        info = await self._retrying(f"info {bucket}", lambda: self._js.stream_info(stream_name(bucket)))
        return info.state.first_seq, info.state.last_seq

    async def stream_position(self, bucket: str) -> tuple[int, str | None]:
        """``(last_seq, server)``: the bucket stream's last revision and the name of the server
        that reported it (the stream leader; None when the server gives no cluster details).
        That server's copy of the stream holds every revision up to ``last_seq`` from then on."""
        info = await self._retrying(f"info {bucket}", lambda: self._js.stream_info(stream_name(bucket)))
        return info.state.last_seq, info.cluster.leader if info.cluster else None

    # -- reads -------------------------------------------------------------------------------
    async def get(self, bucket: str, key: str) -> KvRecord | None:
        """Latest record of ``key`` (a delete marker included), or None if the key never existed
        or its history was purged."""
        prefix = subject_prefix(bucket)

        async def fetch() -> KvRecord | None:
            try:
                msg = await self._js.get_msg(stream_name(bucket), subject=prefix + key, direct=False)
            except nats.js.errors.NotFoundError:
                return None
            return parse_record(prefix, msg.subject or prefix + key, msg.seq or 0, msg.headers, msg.data or b"")

        return await self._retrying(f"get {bucket}/{key}", fetch)

    async def get_revision(self, bucket: str, revision: int) -> KvRecord | None:
        """The record stored at ``revision`` (any key), None if it is gone."""
        prefix = subject_prefix(bucket)

        async def fetch() -> KvRecord | None:
            try:
                msg = await self._js.get_msg(stream_name(bucket), seq=revision, direct=False)
            except nats.js.errors.NotFoundError:
                return None
            return parse_record(prefix, msg.subject or "", msg.seq or revision, msg.headers, msg.data or b"")

        return await self._retrying(f"get {bucket}@{revision}", fetch)

    # -- writes ------------------------------------------------------------------------------
    async def write(self, bucket: str, key: str, value: bytes, *, expected: int | None, delete: bool = False,
                    create: bool = False) -> int:
        """Store ``value`` under ``key`` only if its latest revision is ``expected`` (0 = the key
        has no message at all; None = unconditional). ``delete=True`` writes a delete marker
        carrying ``value``; ``create=True`` marks an object creation. Returns the new revision;
        raises WrongLastRevision when the CAS fails."""
        self._writes += 1
        headers = {MSG_ID: f"{self._id_prefix}{self._writes:x}"}
        if expected is not None:
            headers[EXPECTED_LAST] = str(expected)
        if delete:
            headers[KV_OP] = "DEL"
        if create:
            headers[CREATE_MARK] = "1"
        subject = subject_prefix(bucket) + key
        attempts = 0

        async def publish() -> int:
            nonlocal attempts
            attempts += 1
            try:
                seq = await self._acks.publish(subject, value, dict(headers), self.request_timeout)
            except nats.js.errors.APIError as err:
                if err.err_code not in _WRONG_LAST_SEQUENCE:
                    raise
                if attempts > 1:
                    # An earlier attempt may have been stored before its reply was lost; the
                    # server's de-duplication does not cover a restart, so look for our message.
                    latest = await self._get_raw(bucket, key)
                    if latest is not None and latest[1].get(MSG_ID) == headers[MSG_ID]:
                        return latest[0]
                raise WrongLastRevision(err.description or "wrong last sequence", ambiguous=attempts > 1) from err
            return seq

        return await self._retrying(f"write {bucket}/{key}", publish, inline=True)

    async def _get_raw(self, bucket: str, key: str) -> tuple[int, dict[str, str]] | None:
        """(revision, headers) of the key's latest message, one attempt."""
        try:
            msg = await self._js.get_msg(stream_name(bucket), subject=subject_prefix(bucket) + key, direct=False)
        except nats.js.errors.NotFoundError:
            return None
        return msg.seq or 0, dict(msg.headers or {})

    async def purge_through(self, bucket: str, key: str, revision: int) -> None:
        """Remove ``key``'s records up to and including ``revision`` (later ones stay)."""
        await self._retrying(
            f"purge {bucket}/{key}",
            lambda: self._js.purge_stream(stream_name(bucket), seq=revision + 1, subject=subject_prefix(bucket) + key),
        )

    # -- consumers (shared.store.consumers) --------------------------------------------------
    async def snapshot(self, bucket: str, filter_subject: str) -> tuple[list[KvRecord], int]:
        """The latest record of every key under ``filter_subject`` (delete markers included) and
        a revision at which exactly this set was the bucket's state (for list-then-watch)."""
        return await self._reader.snapshot(bucket, filter_subject)

    def tail(self, bucket: str, filter_subject: str, start: int, *,
             heartbeat: float = 1.0, progress: bool = False) -> AsyncIterator[KvRecord | Progress]:
        """Every record under ``filter_subject`` from revision ``start`` on, in order, forever
        (:meth:`StreamReader.tail`: survives server restarts; raises Compacted when ``start``
        is no longer in the stream; ``progress`` yields :class:`Progress` while idle)."""
        return self._reader.tail(bucket, filter_subject, start, heartbeat=heartbeat, progress=progress)
