"""Compaction: purging old delete markers, and the watermark that keeps watches honest.

A deletion leaves a delete marker carrying the object's last state (for DELETED watch events);
markers would pile up forever, so :meth:`Compaction.compact` purges those older than a cutoff, as
etcd compaction does. Before purging it raises the resource's watermark (bucket ``<prefix>_meta``,
key ``compact.<plural>``): a watch starting below it answers 410 Gone instead of silently missing
a purged deletion.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from shared.store.keys import compute_filter_subject, encode_token
from shared.store.records import WrongLastRevision

if TYPE_CHECKING:
    from shared.store.objectstore import ObjectStore

META = "_meta"  # the watermark bucket's plural (bucket <prefix>_meta)

_encode = msgspec.json.Encoder().encode


class Compaction:
    """Compaction of one :class:`ObjectStore`'s buckets."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def watermark(self, plural: str) -> int:
        """Highest revision of ``plural`` whose delete marker may have been purged (0 = none);
        watches must start at or after it."""
        rec = await self.store.kv.get(await self.store.ensure_bucket(META), f"compact.{encode_token(plural)}")
        if rec is None or rec.deleted or not rec.value:
            return 0
        return int(msgspec.json.decode(rec.value)["revision"])

    async def compact(self, plural: str, *, older_than: float = 3600.0) -> int:
        """Purge delete markers (they carry the deleted object's last state) written more than
        ``older_than`` seconds ago, like etcd compaction. The watermark is raised first, so a
        watch from a revision before a purged marker gets 410 Gone instead of missing the
        deletion. Returns how many markers were purged."""
        bucket = await self.store.ensure_bucket(plural)
        records, _ = await self.store.kv.snapshot(bucket, compute_filter_subject(bucket, None))
        cutoff = time.time() - older_than
        doomed = [r for r in records if r.deleted and r.timestamp and r.timestamp < cutoff]
        if not doomed:
            return 0
        await self.raise_watermark(plural, max(r.revision for r in doomed))
        for rec in doomed:
            await self.store.kv.purge_through(bucket, rec.key, rec.revision)
        return len(doomed)

    async def compact_all(self, *, older_than: float = 3600.0) -> int:
        """:meth:`compact` every resource bucket of this store (and the owner index)."""
        total = 0
        for bucket in await self.store.kv.list_buckets(self.store.prefix):
            plural = bucket[len(self.store.prefix):]
            if plural != META:
                total += await self.compact(plural, older_than=older_than)
        return total

    async def raise_watermark(self, plural: str, revision: int) -> None:
        """Set the watermark to ``revision`` unless it is already higher (CAS loop)."""
        meta_bucket = await self.store.ensure_bucket(META)
        key = f"compact.{encode_token(plural)}"
        while True:
            rec = await self.store.kv.get(meta_bucket, key)
            current = int(msgspec.json.decode(rec.value)["revision"]) if rec and rec.value else 0
            if current >= revision:
                return
            try:
                await self.store.kv.write(meta_bucket, key, _encode({"revision": revision}),
                                          expected=rec.revision if rec else 0)
                return
            except WrongLastRevision:
                continue
