"""An in-memory mirror of one bucket, so lists need one round trip instead of a full replay.

Owns the latest encoded value of every live key of a bucket, kept current by one tail over the
whole bucket (what kube-apiserver's watch cache and kine's btree do). A list asks the server for
the stream's last revision, waits until the mirror has applied at least that revision (so a list
sees every write acknowledged before it started), then reads the mirror in one synchronous step:
the state it returns is exactly the bucket at the mirror's revision, which becomes the list's
resourceVersion. When the mirror cannot catch up in time (tail restarting, server gone) the
caller falls back to a direct snapshot; the mirror re-syncs itself after 410 Gone. A mirror
nobody has read for :data:`IDLE_STOP` seconds stops (its tail would cost every process a copy of
every write for nothing); the next :meth:`BucketMirror.wait_for` starts it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from shared.store.keys import compute_filter_subject
from shared.store.kv import KvLayer
from shared.store.records import Compacted, KvRecord, Progress

log = logging.getLogger("kubevirt.store.mirror")

_LAG_WAIT = 1.0  # s
#: s without a read after which a mirror stops its tail and drops its entries
IDLE_STOP = 120.0


class BucketMirror:
    """Latest ``(revision, value)`` per live key of ``bucket``; ``revision`` is the stream
    revision up to which every record has been applied (-1 before the first sync)."""

    def __init__(self, kv: KvLayer, bucket: str, *, idle_stop: float = IDLE_STOP) -> None:
        self.kv = kv
        self.bucket = bucket
        self.idle_stop = idle_stop
        self._used_at = 0.0  # loop time of the last wait_for
        self.entries: dict[str, tuple[int, bytes]] = {}
        self.revision = -1
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start (or restart) the tail that keeps the mirror current."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def is_running(self) -> bool:
        """Whether the mirror's tail is running (it may still be catching up)."""
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # its outcome is moot; a cancel of close() itself still propagates

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """True once every record up to ``revision`` is applied; False after ``timeout`` s
        (at most :data:`_LAG_WAIT` s once synced: a mirror that far behind is not worth waiting for)."""
        self.start()
        loop = asyncio.get_running_loop()
        self._used_at = loop.time()
        deadline = loop.time() + (timeout if self.revision < 0 else min(timeout, _LAG_WAIT))
        while self.revision < revision:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._advanced
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can lose a cancel (gh-86296)
                    await event.wait()
            except TimeoutError:
                return False
        return True

    def items(self, key_prefix: str | None) -> Iterator[tuple[str, int, bytes]]:
        """``(key, revision, value)`` of live keys (optionally under ``key_prefix``). Read it
        without awaiting in between: it is then the state at :attr:`revision`."""
        for key, (revision, value) in self.entries.items():
            if key_prefix is None or key.startswith(key_prefix):
                yield key, revision, value

    def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
            event, self._advanced = self._advanced, asyncio.Event()
            event.set()

    def _apply(self, rec: KvRecord) -> None:
        if rec.deleted or not rec.value:
            self.entries.pop(rec.key, None)
        else:
            self.entries[rec.key] = (rec.revision, rec.value)
        self._advance(rec.revision)

    def _is_idle(self, loop: asyncio.AbstractEventLoop) -> bool:
        return loop.time() - self._used_at > self.idle_stop

    async def _run(self) -> None:
        subject = compute_filter_subject(self.bucket, None)
        loop = asyncio.get_running_loop()
        self._used_at = loop.time()
        try:
            await self._follow(subject, loop)
        finally:
            self.entries = {}
            self.revision = -1

    async def _follow(self, subject: str, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                records, revision = await self.kv.snapshot(self.bucket, subject)
                self.entries = {r.key: (r.revision, r.value) for r in records if not r.deleted and r.value}
                self.revision = -1
                self._advance(revision)
                async for rec in self.kv.tail(self.bucket, subject, revision + 1, progress=True):
                    if isinstance(rec, Progress):
                        if self._is_idle(loop):
                            log.debug("mirror of %s unused for %.0fs; stopping", self.bucket, self.idle_stop)
                            return
                        self._advance(rec.revision)
                    else:
                        self._apply(rec)
            except Compacted:
                log.info("mirror of %s fell behind compaction; re-syncing", self.bucket)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - lists fall back to direct reads meanwhile
                log.info("mirror of %s stopped (%s); re-syncing", self.bucket, err)
                await asyncio.sleep(0.5)


#: s: a bucket listed again within this long of its previous list gets a mirror (lists repeat);
#: a single list (an informer's start) reads the stream directly and leaves nothing running
MIRROR_REPEAT = 30.0


class ListMirrors:
    """The mirrors of one store's buckets, and which list gets one: only a bucket listed again
    within :data:`MIRROR_REPEAT` s of its previous list (a mirror then stops itself after
    :data:`IDLE_STOP` s unread). A watch's initial state (``repeatable=False``) uses a running
    mirror but neither starts one nor counts as a list: an informer's list is followed by such
    a watch when the bucket is empty."""

    def __init__(self, kv: KvLayer) -> None:
        self.kv = kv
        self._mirrors: dict[str, BucketMirror] = {}
        self._listed_at: dict[str, float] = {}  # bucket -> loop time of its last list

    def get(self, bucket: str) -> BucketMirror | None:
        """The bucket's mirror if one was made (running or not)."""
        return self._mirrors.get(bucket)

    def for_list(self, bucket: str, *, repeatable: bool = True) -> BucketMirror | None:
        """The mirror a list of ``bucket`` should read (started if needed), or None: read the
        stream directly."""
        now = asyncio.get_running_loop().time()
        listed_at = self._listed_at.get(bucket)
        if repeatable:
            self._listed_at[bucket] = now
        mirror = self._mirrors.get(bucket)
        if mirror is not None and mirror.is_running():
            return mirror
        if not repeatable or listed_at is None or now - listed_at > MIRROR_REPEAT:
            return None
        if mirror is None:
            mirror = self._mirrors[bucket] = BucketMirror(self.kv, bucket)
        return mirror

    async def close(self) -> None:
        """Stop every mirror."""
        for mirror in self._mirrors.values():
            await mirror.close()
        self._mirrors.clear()
