"""Running one watch of the ObjectStore: start point, initial state, then the bucket's tail.

:func:`stream_watch` drives what :meth:`shared.store.objectstore.ObjectStore.watch` returns: it
checks the start revision against the compaction watermark (410) and the bucket's newest revision
(504 after :data:`~shared.store.watch.FRESHNESS_WAIT`, :func:`wait_until_reached`), sends the
current state as ADDED events when no start revision is given, then turns every record of the
bucket's tail into the event one watcher sees (:class:`~shared.store.watch.EventComputer`) and
adds BOOKMARKs while idle. The per-record rules live in :mod:`shared.store.watch`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from shared.store.keys import compute_filter_subject
from shared.store.records import Compacted, Progress
from shared.store.selectors import FieldSelector, LabelSelector
from shared.store.watch import (
    FRESHNESS_WAIT,
    EventComputer,
    WatchEvent,
    gone,
    too_large,
)

if TYPE_CHECKING:
    from shared.store.objectstore import ObjectStore


async def wait_until_reached(store: ObjectStore, bucket: str, revision: int) -> None:
    """Return once the bucket's stream holds ``revision``; raise the 504 of
    :func:`shared.store.watch.too_large` after :data:`FRESHNESS_WAIT` seconds (a client with
    a resourceVersion from the future, or from another installation, is told so at once
    rather than left waiting on a watch that would skip everything up to it). No request when
    this process's mirror of the bucket already holds it (the usual list-then-watch)."""
    mirror = store._mirrors.get(bucket)
    if mirror is not None and mirror.revision >= revision:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FRESHNESS_WAIT
    while True:
        _, last = await store.kv.stream_bounds(bucket)
        if revision <= last:
            return
        if loop.time() >= deadline:
            raise too_large(revision, last)
        await asyncio.sleep(0.1)


async def stream_watch(store: ObjectStore, plural: str, namespace: str | None, start_rv: int | None,
                       labels: LabelSelector, fields: FieldSelector,
                       bookmark_interval: float | None) -> AsyncIterator[WatchEvent]:
    """The events of one watch (see :meth:`ObjectStore.watch`): from ``start_rv`` (None = the
    current state as ADDED events first), selector transitions as Kubernetes' watch cache
    phrases them, BOOKMARKs every ``bookmark_interval`` s while idle. Raises Gone (410) when
    history no longer reaches ``start_rv`` or a revision went missing, Timeout (504) for a
    ``start_rv`` the bucket has not reached within :data:`FRESHNESS_WAIT`."""
    bucket = await store.ensure_bucket(plural)
    ns = fields.wanted("metadata.namespace") if namespace is None else namespace
    name = fields.wanted("metadata.name")
    subject = compute_filter_subject(bucket, ns, name if ns is not None else None)

    def passes(obj: dict[str, Any]) -> bool:
        return labels.matches(obj) and fields.matches(obj)

    initial: list[WatchEvent] = []
    snapshot_keys: list[tuple[str, dict[str, Any], int]] = []
    if start_rv is not None:
        watermark = await store.compaction_watermark(plural)
        if start_rv < watermark:
            raise gone(start_rv, watermark + 1)
        await wait_until_reached(store, bucket, start_rv)
    if start_rv is None:
        records, revision = await store._list_records(bucket, ns, name if ns is not None else None, subject,
                                                      repeatable=False)
        for listed in sorted(records, key=lambda r: r.revision):
            if listed.deleted or not listed.value:
                continue
            obj = store._decode(bucket, listed)
            if passes(obj):
                initial.append(WatchEvent("ADDED", obj))
                snapshot_keys.append((listed.key, obj, listed.revision))
        start = revision + 1
    else:
        start = start_rv + 1

    computer = EventComputer(
        start, passes, needs_previous=not labels.is_everything,
        fetch_previous=lambda rev: store.kv.get_revision(bucket, rev),
        selects_all=labels.is_everything and fields.is_everything,
    )
    for key, obj, rev in snapshot_keys:
        computer.remember(key, obj, rev)
    for event in initial:
        yield event
    bookmarked_at = time.monotonic()
    # idle heartbeats carry the progress bookmarks are made of: beat at least as often
    heartbeat = 1.0 if bookmark_interval is None else max(0.1, min(1.0, bookmark_interval))
    try:
        async for rec in store.kv.tail(bucket, subject, start, heartbeat=heartbeat,
                                      progress=bookmark_interval is not None):
            if isinstance(rec, Progress):
                now = time.monotonic()
                if bookmark_interval is not None and now - bookmarked_at >= bookmark_interval:
                    bookmarked_at = now
                    yield WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": str(rec.revision)}})
                continue
            if rec.deleted:
                store._seen.forget(bucket, rec.key)
            elif rec.value:
                store._seen.remember(bucket, rec.key, rec.revision, rec.value)
            change = await computer.compute(rec)
            if change is not None:
                yield change
    except Compacted as err:
        raise gone(err.requested - 1, err.oldest) from None
