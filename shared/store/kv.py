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
  revision instead of a false conflict).

Object semantics (metadata, resourceVersion strings, errors in Kubernetes' words) are in
:mod:`shared.store.objectstore`; this module speaks revisions (``int``) and bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

from shared import metrics
from shared.bus import Bus, describe_nats_error
from shared.errors import InternalError, RequestTooLarge, ServiceUnavailable
from shared.store.keys import stream_name, subject_prefix

log = logging.getLogger("kubevirt.store.kv")

KV_OP = "KV-Operation"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
CREATE_MARK = "Kvpy-Create"  # set on object creations, so watchers tell ADDED from MODIFIED
MARKER_REASON = "Nats-Marker-Reason"  # server-made marker (per-key TTL expiry): the key is gone
_DELETE_OPS = ("DEL", "PURGE")
_WRONG_LAST_SEQUENCE = (10071, 10164)
_TAIL_POLL = 0.2  # s between checks for a lost consumer while a watch is idle

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """A tail's note that every record under its filter up to ``revision`` has been delivered."""

    revision: int


class WrongLastRevision(Exception):
    """The CAS failed: the key's latest revision is not the expected one."""


class Compacted(Exception):
    """Revisions the caller asked for are no longer in the stream.

    ``requested`` is the first revision wanted, ``oldest`` the first still held.
    """

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} compacted, oldest is {oldest}")
        self.requested = requested
        self.oldest = oldest


@dataclass(frozen=True)
class KvRecord:
    """One stored message: ``revision`` is its stream sequence, ``prev_revision`` the revision the
    writer expected to replace (0 = none), ``deleted`` for delete/purge markers (``value`` then
    holds the object's last state, possibly empty when another client wrote the marker)."""

    key: str
    revision: int
    prev_revision: int
    deleted: bool
    value: bytes
    created: bool = False
    timestamp: float = 0.0  # when the server stored it (epoch s); 0 when not delivered by a consumer


def _record(prefix: str, subject: str, seq: int, headers: dict[str, str] | None, data: bytes,
            timestamp: float = 0.0) -> KvRecord:
    headers = headers or {}
    try:
        prev = int(headers.get(EXPECTED_LAST) or 0)
    except ValueError:
        prev = 0
    deleted = headers.get(KV_OP) in _DELETE_OPS or MARKER_REASON in headers
    return KvRecord(subject[len(prefix) :], seq, prev, deleted, data or b"", CREATE_MARK in headers, timestamp)


class _Delivery:
    """Messages of one push consumer, queued by the subscription callback.

    Waiting with a timeout only when the queue is empty keeps the per-message cost low
    (nats-py's ``next_msg`` starts a task for every message)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sub = None

    async def put(self, msg) -> None:
        self.queue.put_nowait(msg)

    async def next(self, timeout: float):
        """The next message; asyncio.TimeoutError after ``timeout`` s without one.

        ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 a cancellation that
        meets a ``wait_for`` timeout or result at the same moment can be lost (CPython gh-86296),
        and a watch loop calling this many times a second would then never stop."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            async with asyncio.timeout(timeout):
                return await self.queue.get()


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
        self._reconnected: asyncio.Future | None = None
        bus.add_reconnect_listener(self._on_reconnected)

    def _on_reconnected(self) -> None:
        # the server may have come back without our buckets (new data dir): check them again
        self._ready.clear()
        # wake calls whose request went out on the dead connection; they retry at once
        waiting, self._reconnected = self._reconnected, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """One try of ``call``, abandoned (TimeoutError) if the connection is re-established
        meanwhile: its request or reply was lost with the old connection."""
        if self._reconnected is None:
            self._reconnected = asyncio.get_running_loop().create_future()
        reconnected = self._reconnected
        task = asyncio.ensure_future(call())
        started = time.perf_counter()
        try:
            await asyncio.wait({task, reconnected}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task.done():
            ok = not task.cancelled() and task.exception() is None
            metrics.NATS_REQUEST_DURATION.labels("ok" if ok else "error").observe(time.perf_counter() - started)
            return task.result()
        task.cancel()
        raise asyncio.TimeoutError

    # -- helpers -----------------------------------------------------------------------------
    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """:meth:`_retrying_unmeasured`, timed in ``kubevirt_store_operation_duration_seconds``
        (label ``operation`` = first word of ``what``: get, write, list, info, create, ...)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._retrying_unmeasured(what, call)
            outcome = "ok"
            return result
        finally:
            metrics.STORE_OPERATION_DURATION.labels(what.split(" ", 1)[0], outcome).observe(
                time.perf_counter() - started)

    async def _retrying_unmeasured(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; retry transient failures (timeouts, no responders, leader elections)
        until ``op_timeout``. The last failure becomes ServiceUnavailable."""
        deadline = time.monotonic() + self.op_timeout
        delay = 0.05
        while True:
            try:
                return await self._attempt(call)
            except (nats.errors.TimeoutError, asyncio.TimeoutError, nats.errors.NoRespondersError,
                    nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError,
                    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                    nats.errors.OutboundBufferLimitError) as err:
                failure = err
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
            return _record(prefix, msg.subject or prefix + key, msg.seq or 0, msg.headers, msg.data or b"")

        return await self._retrying(f"get {bucket}/{key}", fetch)

    async def get_revision(self, bucket: str, revision: int) -> KvRecord | None:
        """The record stored at ``revision`` (any key), None if it is gone."""
        prefix = subject_prefix(bucket)

        async def fetch() -> KvRecord | None:
            try:
                msg = await self._js.get_msg(stream_name(bucket), seq=revision, direct=False)
            except nats.js.errors.NotFoundError:
                return None
            return _record(prefix, msg.subject or "", msg.seq or revision, msg.headers, msg.data or b"")

        return await self._retrying(f"get {bucket}@{revision}", fetch)

    # -- writes ------------------------------------------------------------------------------
    async def write(self, bucket: str, key: str, value: bytes, *, expected: int | None, delete: bool = False,
                    create: bool = False) -> int:
        """Store ``value`` under ``key`` only if its latest revision is ``expected`` (0 = the key
        has no message at all; None = unconditional). ``delete=True`` writes a delete marker
        carrying ``value``; ``create=True`` marks an object creation. Returns the new revision;
        raises WrongLastRevision when the CAS fails."""
        headers = {MSG_ID: uuid.uuid4().hex}
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
                ack = await self._js.publish(subject, value, headers=dict(headers))
            except nats.js.errors.APIError as err:
                if err.err_code not in _WRONG_LAST_SEQUENCE:
                    raise
                if attempts > 1:
                    # An earlier attempt may have been stored before its reply was lost; the
                    # server's de-duplication does not cover a restart, so look for our message.
                    latest = await self._get_raw(bucket, key)
                    if latest is not None and latest[1].get(MSG_ID) == headers[MSG_ID]:
                        return latest[0]
                raise WrongLastRevision(err.description or "wrong last sequence") from err
            return ack.seq

        return await self._retrying(f"write {bucket}/{key}", publish)

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

    # -- consumers ---------------------------------------------------------------------------
    async def _open(self, bucket: str, filter_subject: str, policy: api.DeliverPolicy,
                    start: int | None, heartbeat: float | None,
                    flow_control: bool = False) -> tuple["_Delivery", api.ConsumerInfo]:
        """An ephemeral push consumer (no acks, memory state) delivering into a local queue."""
        nc = self.bus.client
        inbox = nc.new_inbox()
        delivery = _Delivery()
        delivery.sub = await nc.subscribe(
            inbox, cb=delivery.put, pending_msgs_limit=1_000_000, pending_bytes_limit=512 * 1024 * 1024
        )
        config = api.ConsumerConfig(
            deliver_subject=inbox,
            deliver_policy=policy,
            opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=filter_subject,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
            idle_heartbeat=heartbeat,
            flow_control=flow_control or None,
        )
        try:
            info = await self._js._jsm.add_consumer(stream_name(bucket), config, timeout=self.request_timeout)
        except BaseException:
            await delivery.sub.unsubscribe()
            raise
        return delivery, info

    async def _close(self, bucket: str, delivery: "_Delivery", consumer: str | None) -> None:
        try:
            await delivery.sub.unsubscribe()
        except nats.errors.Error:
            pass
        if consumer and self.bus.is_connected:
            try:
                await self.bus.client.request(
                    f"$JS.API.CONSUMER.DELETE.{stream_name(bucket)}.{consumer}", b"", timeout=0.5
                )
            except (nats.errors.Error, asyncio.TimeoutError):
                pass  # an ephemeral consumer also vanishes after its inactive threshold

    async def snapshot(self, bucket: str, filter_subject: str) -> tuple[list[KvRecord], int]:
        """The latest record of every key under ``filter_subject`` (delete markers included) and
        a revision at which exactly this set was the bucket's state (for list-then-watch)."""
        prefix = subject_prefix(bucket)

        async def attempt() -> tuple[list[KvRecord], int] | None:
            _, last_before = await self.stream_bounds(bucket)
            delivery, info = await self._open(bucket, filter_subject, api.DeliverPolicy.LAST_PER_SUBJECT, None, None)
            try:
                records: list[KvRecord] = []
                for expected_cseq in range(1, (info.num_pending or 0) + 1):
                    msg = await delivery.next(self.request_timeout)
                    md = msg.metadata
                    if md.sequence.consumer != expected_cseq:
                        return None  # a message was dropped client-side: start over
                    records.append(_record(prefix, msg.subject, md.sequence.stream, msg.headers, msg.data,
                                           md.timestamp.timestamp()))
            finally:
                await self._close(bucket, delivery, info.name)
            # Nothing under the filter changed between the snapshot's newest record and
            # last_before (it would be in the set), so the larger of the two is a valid revision.
            revision = max([last_before] + [r.revision for r in records])
            return records, revision

        deadline = time.monotonic() + self.op_timeout
        while True:
            result = await self._retrying(f"list {bucket}", attempt)
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"list of {bucket} kept losing messages; try again")

    async def tail(self, bucket: str, filter_subject: str, start: int, *,
                   heartbeat: float = 1.0, progress: bool = False) -> AsyncIterator[KvRecord | Progress]:
        """Every record under ``filter_subject`` from revision ``start`` on, in order, forever.

        Survives server restarts and dropped messages: the consumer is re-created from the next
        revision when a message is missing, heartbeats stop, or the connection drops. Raises
        Compacted when revisions from ``start`` on are no longer in the stream. With
        ``progress`` an idle tail also yields :class:`Progress` about every ``heartbeat`` s.
        """
        prefix = subject_prefix(bucket)
        next_rev = start
        while True:
            try:
                first, last = await self.stream_bounds(bucket)
                if next_rev < first and next_rev <= last:
                    raise Compacted(next_rev, first)
                delivery, info = await self._retrying(
                    f"watch {bucket}",
                    lambda: self._open(bucket, filter_subject, api.DeliverPolicy.BY_START_SEQUENCE,
                                       max(next_rev, 1), heartbeat, flow_control=True),
                )
            except ServiceUnavailable as err:
                if self.bus.client.is_closed:
                    raise
                log.info("watch %s: %s; retrying", bucket, err)
                await asyncio.sleep(0.5)
                continue
            expected_cseq = 1
            reconnects = self.bus.reconnects
            last_heard = time.monotonic()
            try:
                while True:
                    try:
                        msg = await delivery.next(_TAIL_POLL)
                    except asyncio.TimeoutError:
                        if self.bus.client.is_closed:
                            raise ServiceUnavailable("NATS connection closed under a watch") from None
                        if self.bus.reconnects != reconnects:
                            log.info("watch %s: reconnected, resuming at %d", bucket, next_rev)
                            break  # the server may have lost our consumer -> re-create
                        if time.monotonic() - last_heard > heartbeat * 3:
                            log.info("watch %s: heartbeats stopped, resuming at %d", bucket, next_rev)
                            break  # consumer lost -> re-create
                        continue
                    last_heard = time.monotonic()
                    headers = msg.headers or {}
                    if headers.get("Status"):
                        # control message. Flow control: answering tells the server this watcher
                        # has consumed everything sent so far (keeps a slow watcher's queue short).
                        if msg.reply:
                            await self.bus.client.publish(msg.reply, b"")
                        if stalled := headers.get("Nats-Consumer-Stalled"):
                            await self.bus.client.publish(stalled, b"")
                        # idle heartbeat: check no data message went missing meanwhile
                        last_cseq = headers.get("Nats-Last-Consumer")
                        if last_cseq is not None and int(last_cseq) != expected_cseq - 1:
                            log.info("watch %s: messages missed, resuming at %d", bucket, next_rev)
                            break
                        if progress:
                            # the consumer has looked at the stream up to Nats-Last-Stream
                            scanned = int(headers.get("Nats-Last-Stream") or 0)
                            yield Progress(max(next_rev - 1, scanned))
                        continue
                    md = msg.metadata
                    if md.sequence.consumer != expected_cseq:
                        log.info("watch %s: message out of order, resuming at %d", bucket, next_rev)
                        break
                    expected_cseq += 1
                    next_rev = md.sequence.stream + 1
                    yield _record(prefix, msg.subject, md.sequence.stream, msg.headers, msg.data,
                                  md.timestamp.timestamp())
            finally:
                await self._close(bucket, delivery, info.name)
