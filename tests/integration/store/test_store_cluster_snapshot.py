"""A list of an R3 bucket is the bucket's state at the revision it names, whichever node serves it.

A snapshot reads through an R1 ephemeral consumer, which nats-server places on any of the
stream's peers (``createGroupForConsumer`` shuffles the active peers); a follower's copy of the
stream may lag the leader by the writes of the last moments. The list's revision must then be
one that node's copy had reached: naming the leader's newer last revision made the following
watch start past writes the list never saw, and those objects stayed stale in an informer
(a VMI whose Scheduled update was skipped was never started).
"""

from __future__ import annotations

import asyncio

from shared.natsserver import NatsCluster
from shared.store import ObjectStore
from shared.store.consumers import compute_snapshot_revision
from shared.store.keys import compute_filter_subject, compute_key

WRITERS = 64
SNAPSHOTS = 60


def compute_misses(acked: dict[str, list[int]], snapshot: dict[str, int], revision: int) -> dict[str, tuple[int, int]]:
    """Keys whose latest write at ``revision`` the snapshot does not hold:
    key -> (revision in the snapshot (0 = absent), newest acknowledged revision <= ``revision``)."""
    misses = {}
    for key, revisions in acked.items():
        due = max((r for r in revisions if r <= revision), default=0)
        if snapshot.get(key, 0) < due:
            misses[key] = (snapshot.get(key, 0), due)
    return misses


def test_snapshot_revision_is_the_consumers_position_unless_it_ran_on_the_leader():
    assert compute_snapshot_revision(newest_record=40, stream_last=90, scanned=None) == 90
    assert compute_snapshot_revision(newest_record=40, stream_last=90, scanned=61) == 61
    assert compute_snapshot_revision(newest_record=70, stream_last=90, scanned=61) == 70
    assert compute_snapshot_revision(newest_record=0, stream_last=0, scanned=0) == 0


async def test_snapshot_under_writes_holds_every_write_up_to_its_revision(nats_cluster: NatsCluster):
    store = await ObjectStore.connect(nats_cluster.urls, replicas=3, bucket_prefix="snap_")
    try:
        bucket = await store.ensure_bucket("things")
        subject = compute_filter_subject(bucket, None)
        acked: dict[str, list[int]] = {compute_key("default", f"o{w}"): [] for w in range(WRITERS)}
        stop = asyncio.Event()

        async def write(key: str) -> None:
            # each writer its own key: its acknowledged revisions are that key's records, in order
            while not stop.is_set():
                acked[key].append(await store.kv.write(bucket, key, b"x" * 8192, expected=None))

        writers = [asyncio.create_task(write(key)) for key in acked]
        try:
            while sum(map(len, acked.values())) < WRITERS:  # every key written at least once
                await asyncio.sleep(0.01)
            failures = []
            for _ in range(SNAPSHOTS):
                records, revision = await store.kv.snapshot(bucket, subject)
                held = {r.key: r.revision for r in records}
                assert max(held.values()) <= revision
                if misses := compute_misses(acked, held, revision):
                    failures.append((revision, misses))
        finally:
            stop.set()
            await asyncio.gather(*writers)
        assert failures == []
    finally:
        await store.close()
