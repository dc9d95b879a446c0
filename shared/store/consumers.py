"""Reading a bucket's stream through ephemeral push consumers: list snapshots and tails.

Owns the two consumer-based reads of :class:`shared.store.kv.KvLayer`:

* :meth:`StreamReader.snapshot` - the latest record of every key under a filter (deliver policy
  "last per subject") and a revision at which exactly that set was the bucket's state, which is
  what list-then-watch needs;
* :meth:`StreamReader.tail` - every record from a revision on, forever, surviving server
  restarts, dropped messages and lost consumers (re-created from the next revision), with flow
  control answered and optional progress notes from idle heartbeats.

Consumers are ephemeral, unacknowledged and in memory; messages are queued by the
subscription's callback (:class:`_Delivery`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from shared.errors import ServiceUnavailable
from shared.store.keys import stream_name, subject_prefix
from shared.store.records import Compacted, KvRecord, Progress, parse_record

if TYPE_CHECKING:
    from shared.store.kv import KvLayer

log = logging.getLogger("kubevirt.store.kv")

_TAIL_POLL = 0.2  # s between checks for a lost consumer while a watch is idle


class _Delivery:
    """Messages of one push consumer, queued by the subscription callback.

    Waiting with a timeout only when the queue is empty keeps the per-message cost low
    (nats-py's ``next_msg`` starts a task for every message)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.sub: Subscription | None = None

    async def put(self, msg: Msg) -> None:
        """The subscription's callback: queue ``msg``."""
        self.queue.put_nowait(msg)

    async def unsubscribe(self) -> None:
        """End the subscription (if it was made)."""
        if self.sub is not None:
            await self.sub.unsubscribe()

    async def next(self, timeout: float) -> Msg:
        """The next message; asyncio.TimeoutError after ``timeout`` s without one.

        ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 a cancellation that
        meets a ``wait_for`` timeout or result at the same moment can be lost (CPython gh-86296),
        and a watch loop calling this many times a second would then never stop."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            async with asyncio.timeout(timeout):
                return await self.queue.get()



def compute_snapshot_revision(newest_record: int, stream_last: int, scanned: int | None) -> int:
    """The revision a "last per subject" snapshot is the bucket's state at.

    ``newest_record`` is the newest revision among the snapshot's records (0: none),
    ``stream_last`` the stream's last revision as its leader reported it before the consumer
    was made, ``scanned`` the consumer's delivered stream sequence read after its messages
    (None when the consumer runs on that same leader's server). nats-server places an R1
    ephemeral consumer on any peer of the stream (``createGroupForConsumer`` shuffles the
    active peers) and it reads that server's own copy, which may lag the leader: the snapshot
    is then the state at the consumer's position, not at ``stream_last``. On the server that
    reported ``stream_last`` its copy already held it (a server's copy only grows), and nothing
    under the filter changed between the newest record and then (it would be in the set)."""
    if scanned is None:
        return max(stream_last, newest_record)
    return max(scanned, newest_record)


class StreamReader:
    """Snapshots and tails of the buckets of one :class:`~shared.store.kv.KvLayer` (its
    connection, retries and timeouts)."""

    def __init__(self, kv: KvLayer) -> None:
        self.kv = kv
        self.bus = kv.bus

    async def _open(self, bucket: str, filter_subject: str, policy: api.DeliverPolicy,
                    start: int | None, heartbeat: float | None,
                    flow_control: bool = False) -> tuple[_Delivery, api.ConsumerInfo]:
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
            info = await self.kv._js._jsm.add_consumer(stream_name(bucket), config, timeout=self.kv.request_timeout)
        except BaseException:
            await delivery.unsubscribe()
            raise
        return delivery, info

    async def _close(self, bucket: str, delivery: _Delivery, consumer: str | None) -> None:
        try:
            await delivery.unsubscribe()
        except nats.errors.Error:
            pass
        if consumer and self.bus.is_connected:
            try:
                await self.bus.client.request(
                    f"$JS.API.CONSUMER.DELETE.{stream_name(bucket)}.{consumer}", b"", timeout=0.5
                )
            except (TimeoutError, nats.errors.Error):
                pass  # an ephemeral consumer also vanishes after its inactive threshold

    async def snapshot(self, bucket: str, filter_subject: str) -> tuple[list[KvRecord], int]:
        """The latest record of every key under ``filter_subject`` (delete markers included) and
        a revision at which exactly this set was the bucket's state (for list-then-watch).

        The consumer reads the copy of the stream held by the server nats-server placed it on
        (any peer of an R3 stream, see :func:`compute_snapshot_revision`); when that is not the
        server whose last revision was read first, the consumer's own position names the
        revision. Raises ServiceUnavailable when the stream stays unreachable."""
        prefix = subject_prefix(bucket)

        async def attempt() -> tuple[list[KvRecord], int] | None:
            last_before, stream_server = await self.kv.stream_position(bucket)
            delivery, info = await self._open(bucket, filter_subject, api.DeliverPolicy.LAST_PER_SUBJECT, None, None)
            latest: dict[str, KvRecord] = {}
            received = 0

            async def receive(through_cseq: int) -> bool:
                """Take the consumer's messages up to consumer sequence ``through_cseq``
                (a later record of a key replaces the earlier); False if one was dropped."""
                nonlocal received
                while received < through_cseq:
                    msg = await delivery.next(self.kv.request_timeout)
                    md = msg.metadata
                    if md.sequence.consumer != received + 1:
                        return False
                    received += 1
                    rec = parse_record(prefix, msg.subject, md.sequence.stream, msg.headers, msg.data,
                                       md.timestamp.timestamp())
                    latest[rec.key] = rec
                return True

            try:
                if not await receive(info.num_pending or 0):
                    return None  # a message was dropped client-side: start over
                consumer_server = info.cluster.leader if info.cluster else None
                scanned = None
                if consumer_server != stream_server:
                    # another copy of the stream, possibly behind: where has this consumer looked?
                    position = await self.kv._js._jsm.consumer_info(stream_name(bucket), info.name,
                                                                    timeout=self.kv.request_timeout)
                    if position.delivered is None or not await receive(position.delivered.consumer_seq or 0):
                        return None
                    scanned = position.delivered.stream_seq or 0
            finally:
                await self._close(bucket, delivery, info.name)
            records = list(latest.values())
            newest = max((r.revision for r in records), default=0)
            return records, compute_snapshot_revision(newest, last_before, scanned)

        deadline = time.monotonic() + self.kv.op_timeout
        while True:
            result = await self.kv._retrying(f"list {bucket}", attempt)
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
                first, last = await self.kv.stream_bounds(bucket)
                if next_rev < first and next_rev <= last:
                    raise Compacted(next_rev, first)
                delivery, info = await self.kv._retrying(
                    f"watch {bucket}",
                    lambda: self._open(bucket, filter_subject, api.DeliverPolicy.BY_START_SEQUENCE,
                                       max(next_rev, 1), heartbeat, flow_control=True),  # noqa: B023 - used at once
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
                    except TimeoutError:
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
                    yield parse_record(prefix, msg.subject, md.sequence.stream, msg.headers, msg.data,
                                  md.timestamp.timestamp())
            finally:
                await self._close(bucket, delivery, info.name)
