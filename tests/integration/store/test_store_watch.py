"""ObjectStore.watch: ordered, exactly-once delivery from a resourceVersion, selectors, 410 Gone,
and resuming across a nats-server restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from store_objects import make_vm

from shared.errors import AlreadyExists, Conflict, Gone, NotFound, Timeout
from shared.natsserver import NatsServer
from shared.store import ObjectStore, WatchEvent

VMS = "virtualmachines"


async def take(stream: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0) -> list[tuple[str, str, str]]:
    """The next ``count`` events as (type, name, resourceVersion)."""
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            ev = await anext(stream)
            out.append((ev.type, ev.object["metadata"]["name"], ev.object["metadata"]["resourceVersion"]))
    return out


async def assert_quiet(stream: AsyncIterator[WatchEvent], seconds: float = 0.3) -> None:
    """No event arrives within ``seconds`` (this ends the stream: call it last)."""
    task = asyncio.ensure_future(anext(stream))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await task
    assert not done, f"unexpected event {task.result() if done else None}"


async def test_watch_from_a_resource_version_sees_every_later_change_once_in_order(object_store: ObjectStore):
    before = await object_store.create(VMS, make_vm("old"))
    start_rv = before["metadata"]["resourceVersion"]
    a = await object_store.create(VMS, make_vm("a"))
    a2 = await object_store.update(VMS, {**a, "spec": {"running": True}})
    gone = await object_store.delete(VMS, "default", "a")
    b = await object_store.create(VMS, make_vm("b"))
    stream = object_store.watch(VMS, "default", resource_version=start_rv)
    events = await take(stream, 4)
    assert events == [
        ("ADDED", "a", a["metadata"]["resourceVersion"]),
        ("MODIFIED", "a", a2["metadata"]["resourceVersion"]),
        ("DELETED", "a", gone["metadata"]["resourceVersion"]),
        ("ADDED", "b", b["metadata"]["resourceVersion"]),
    ]
    # and live changes keep coming after the replay
    old2 = await object_store.update(VMS, {**before, "spec": {"running": True}})
    assert await take(stream, 1) == [("MODIFIED", "old", old2["metadata"]["resourceVersion"])]
    await assert_quiet(stream)


async def test_deleted_event_carries_the_last_state(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("x", labels={"keep": "me"}))
    stream = object_store.watch(VMS, resource_version=obj["metadata"]["resourceVersion"])
    await object_store.delete(VMS, "default", "x")
    event = await anext(stream)
    assert event.type == "DELETED"
    assert event.object["metadata"]["labels"] == {"keep": "me"}
    assert event.object["spec"] == obj["spec"]
    await stream.aclose()


async def test_watch_without_resource_version_starts_with_current_state(object_store: ObjectStore):
    await object_store.create(VMS, make_vm("a"))
    await object_store.create(VMS, make_vm("b"))
    await object_store.create(VMS, make_vm("c"))
    await object_store.delete(VMS, "default", "c")
    stream = object_store.watch(VMS)
    assert [(t, n) for t, n, _ in await take(stream, 2)] == [("ADDED", "a"), ("ADDED", "b")]
    created = await object_store.create(VMS, make_vm("d"))
    assert await take(stream, 1) == [("ADDED", "d", created["metadata"]["resourceVersion"])]
    await stream.aclose()


async def test_list_then_watch_from_the_list_revision_misses_nothing(object_store: ObjectStore):
    for i in range(5):
        await object_store.create(VMS, make_vm(f"pre{i}"))

    async def writer() -> None:
        for i in range(30):
            await object_store.create(VMS, make_vm(f"live{i}"))

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    items, list_rv = await object_store.list(VMS)
    listed = {o["metadata"]["name"] for o in items}
    stream = object_store.watch(VMS, resource_version=list_rv)
    await task
    seen = set(listed)
    while len(seen) < 35:  # every object either listed or watched, none twice
        [(kind, name, rv)] = await take(stream, 1)
        assert kind == "ADDED" and name not in seen and int(rv) > int(list_rv)
        seen.add(name)
    await assert_quiet(stream)


async def test_namespace_watch_ignores_other_namespaces(object_store: ObjectStore):
    stream = object_store.watch(VMS, "mine", resource_version=(await object_store.list(VMS))[1])
    await object_store.create(VMS, make_vm("x", namespace="theirs"))
    mine = await object_store.create(VMS, make_vm("x", namespace="mine"))
    assert await take(stream, 1) == [("ADDED", "x", mine["metadata"]["resourceVersion"])]
    await stream.aclose()


async def test_objects_entering_and_leaving_a_label_selector_are_added_and_deleted(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("s", labels={"app": "db"}))
    stream = object_store.watch(VMS, label_selector="app=web", resource_version=obj["metadata"]["resourceVersion"])
    web = await object_store.update(VMS, {**obj, "metadata": {**obj["metadata"], "labels": {"app": "web"}}})
    web2 = await object_store.update(VMS, {**web, "spec": {"running": True}})
    db = await object_store.update(VMS, {**web2, "metadata": {**web2["metadata"], "labels": {"app": "db"}}})
    await object_store.update(VMS, {**db, "spec": {"running": False}})
    events = await take(stream, 3)
    assert events == [
        ("ADDED", "s", web["metadata"]["resourceVersion"]),
        ("MODIFIED", "s", web2["metadata"]["resourceVersion"]),
        ("DELETED", "s", db["metadata"]["resourceVersion"]),
    ]
    await assert_quiet(stream)


async def test_label_selector_watch_resumed_mid_way_knows_the_earlier_match(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("s", labels={"app": "web"}))
    stream = object_store.watch(VMS, label_selector="app=web", resource_version=obj["metadata"]["resourceVersion"])
    left = await object_store.update(VMS, {**obj, "metadata": {**obj["metadata"], "labels": {"app": "db"}}})
    [(kind, _, rv)] = await take(stream, 1)
    assert (kind, rv) == ("DELETED", left["metadata"]["resourceVersion"])
    await stream.aclose()


async def test_watch_from_a_compacted_resource_version_is_gone(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("hot"))
    first_rv = obj["metadata"]["resourceVersion"]
    for i in range(12):  # history keeps 10 revisions per key
        obj = await object_store.update(VMS, {**obj, "spec": {"running": bool(i % 2), "i": i}})
    stream = object_store.watch(VMS, resource_version=first_rv)
    with pytest.raises(Gone) as err:
        await anext(stream)
    assert err.value.code == 410
    assert err.value.reason == "Expired"
    assert str(err.value).startswith(f"too old resource version: {first_rv} (")


async def test_watch_from_a_resource_version_not_reached_is_refused_after_the_wait(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("now"))
    current = int(obj["metadata"]["resourceVersion"])
    stream = object_store.watch(VMS, resource_version=str(current + 1000))
    started = asyncio.get_running_loop().time()
    with pytest.raises(Timeout) as err:
        await anext(stream)
    waited = asyncio.get_running_loop().time() - started
    assert (err.value.code, err.value.reason) == (504, "Timeout")
    assert str(err.value) == f"Too large resource version: {current + 1000}, current: {current}"
    assert [c.reason for c in err.value.causes] == ["ResourceVersionTooLarge"]
    assert err.value.retry_after_seconds == 1
    assert waited >= 2.9  # kube-apiserver's watch cache waits 3 s for the revision first


async def test_watch_from_a_resource_version_reached_during_the_wait_starts_there(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("first"))
    next_rv = str(int(obj["metadata"]["resourceVersion"]) + 1)
    stream = object_store.watch(VMS, resource_version=next_rv)
    first_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.3)
    at_next = await object_store.create(VMS, make_vm("second"))  # revision next_rv: not in the watch
    assert at_next["metadata"]["resourceVersion"] == next_rv
    after = await object_store.create(VMS, make_vm("third"))
    event = await asyncio.wait_for(first_event, 5)
    assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "third")
    assert event.object["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]


async def test_watch_notices_a_revision_compacted_between_start_and_now(object_store: ObjectStore):
    keep = await object_store.create(VMS, make_vm("anchor"))  # keeps the stream's first revision low
    hot = await object_store.create(VMS, make_vm("hot"))
    start_rv = hot["metadata"]["resourceVersion"]
    for i in range(12):
        hot = await object_store.update(VMS, {**hot, "spec": {"i": i}})
    assert keep["metadata"]["resourceVersion"] == "1"
    stream = object_store.watch(VMS, resource_version=start_rv)
    with pytest.raises(Gone):
        await anext(stream)


async def test_watch_resumes_after_nats_server_restart(fresh_nats_server: NatsServer):
    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix="r_")
    try:
        first = await store.create(VMS, make_vm("before"))
        stream = store.watch(VMS, resource_version=first["metadata"]["resourceVersion"])
        second = await store.create(VMS, make_vm("second"))
        assert await take(stream, 1) == [("ADDED", "second", second["metadata"]["resourceVersion"])]
        fresh_nats_server.stop(kill=True)
        fresh_nats_server.start()
        after = await store.create(VMS, make_vm("after"))
        assert await take(stream, 1, timeout=15) == [("ADDED", "after", after["metadata"]["resourceVersion"])]
        await assert_quiet(stream)
        await stream.aclose()
    finally:
        await store.close()


async def test_idle_watch_sends_bookmarks_that_resume_without_loss(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("mine", namespace="a"))
    stream = object_store.watch(VMS, "a", resource_version=obj["metadata"]["resourceVersion"],
                                bookmark_interval=0.1)
    other = await object_store.create(VMS, make_vm("theirs", namespace="b"))
    async with asyncio.timeout(5):
        while True:
            event = await anext(stream)
            assert event.type == "BOOKMARK"
            if event.object["metadata"]["resourceVersion"] == other["metadata"]["resourceVersion"]:
                break
    await stream.aclose()
    resumed = object_store.watch(VMS, "a", resource_version=other["metadata"]["resourceVersion"])
    changed = await object_store.update(VMS, {**obj, "spec": {"running": True}})
    assert await take(resumed, 1) == [("MODIFIED", "mine", changed["metadata"]["resourceVersion"])]
    await resumed.aclose()


async def test_compaction_purges_old_deletions_and_watches_from_before_it_are_gone(object_store: ObjectStore):
    a = await object_store.create(VMS, make_vm("a"))
    deleted = await object_store.delete(VMS, "default", "a")
    keep = await object_store.create(VMS, make_vm("b"))
    assert await object_store.compact(VMS, older_than=0) == 1
    assert await object_store.compaction_watermark(VMS) == int(deleted["metadata"]["resourceVersion"])

    with pytest.raises(Gone):
        await anext(object_store.watch(VMS, resource_version=a["metadata"]["resourceVersion"]))
    after = object_store.watch(VMS, resource_version=deleted["metadata"]["resourceVersion"])
    again = await object_store.create(VMS, make_vm("a"))  # the purged name can be created again
    assert await take(after, 2) == [
        ("ADDED", "b", keep["metadata"]["resourceVersion"]),
        ("ADDED", "a", again["metadata"]["resourceVersion"]),
    ]
    await after.aclose()
    items, _ = await object_store.list(VMS)
    assert [o["metadata"]["name"] for o in items] == ["a", "b"] and keep in items
    assert await object_store.compact_all(older_than=0) == 0


async def test_delete_collection_deletes_what_the_selector_matches(object_store: ObjectStore):
    await object_store.create(VMS, make_vm("x", labels={"app": "web"}))
    await object_store.create(VMS, make_vm("y", labels={"app": "web"}))
    await object_store.create(VMS, make_vm("z"))
    gone_objs = await object_store.delete_collection(VMS, "default", label_selector="app=web")
    assert sorted(o["metadata"]["name"] for o in gone_objs) == ["x", "y"]
    assert [o["metadata"]["name"] for o in (await object_store.list(VMS))[0]] == ["z"]


async def test_a_slow_watcher_replaying_megabytes_gets_everything_in_order(object_store: ObjectStore):
    first = await object_store.create(VMS, make_vm("first"))
    sem = asyncio.Semaphore(32)
    blob = "x" * 4096

    async def create(i: int) -> None:
        async with sem:
            await object_store.create(VMS, {**make_vm(f"vm-{i:04d}"), "spec": {"blob": blob}})

    await asyncio.gather(*(create(i) for i in range(800)))  # ~3.5 MB to replay
    stream = object_store.watch(VMS, resource_version=first["metadata"]["resourceVersion"])
    revisions = []
    async with asyncio.timeout(30):
        while len(revisions) < 800:
            event = await anext(stream)
            revisions.append(int(event.object["metadata"]["resourceVersion"]))
            if len(revisions) % 100 == 0:
                await asyncio.sleep(0.05)  # a consumer slower than the server
    assert revisions == sorted(revisions) and len(set(revisions)) == 800
    await stream.aclose()


async def test_list_plus_watch_events_rebuild_the_final_state_under_concurrent_writes(nats_server: NatsServer):
    import random
    import uuid

    # history 64: the point here is consistency, not compaction (tested above)
    object_store = await ObjectStore.connect([nats_server.url], bucket_prefix=f"c{uuid.uuid4().hex[:8]}_",
                                             history=64)
    try:
        await _rebuild_under_churn(object_store, random)
    finally:
        await object_store.close()


async def _rebuild_under_churn(object_store: ObjectStore, random) -> None:

    rng = random.Random(7)
    names = [f"vm-{i}" for i in range(12)]

    async def churn(writer: int) -> None:
        for step in range(60):
            name = rng.choice(names)
            try:
                if rng.random() < 0.4:
                    await object_store.create(VMS, make_vm(name, labels={"w": str(writer)}))
                elif rng.random() < 0.7:
                    current = await object_store.get(VMS, "default", name)
                    current["spec"] = {"step": step, "writer": writer}
                    await object_store.update(VMS, current)
                else:
                    await object_store.delete(VMS, "default", name)
            except (AlreadyExists, NotFound, Conflict):
                pass

    writers = [asyncio.create_task(churn(w)) for w in range(3)]
    await asyncio.sleep(0.05)
    items, rv = await object_store.list(VMS)  # taken while the writers run
    state = {o["metadata"]["name"]: o for o in items}
    stream = object_store.watch(VMS, resource_version=rv, bookmark_interval=0.1)
    caught_up_to = 0

    async def apply_events() -> None:
        nonlocal caught_up_to
        async for event in stream:
            if event.type == "BOOKMARK":
                caught_up_to = int(event.object["metadata"]["resourceVersion"])
                continue
            name = event.object["metadata"]["name"]
            if event.type == "DELETED":
                assert name in state
                del state[name]
            else:
                assert (name in state) == (event.type == "MODIFIED")
                state[name] = event.object

    reader = asyncio.create_task(apply_events())  # an informer consumes as the changes come
    await asyncio.gather(*writers)
    final, final_rv = await object_store.list(VMS)
    async with asyncio.timeout(10):
        while caught_up_to < int(final_rv):
            assert not reader.done(), reader.exception()
            await asyncio.sleep(0.05)
    reader.cancel()
    assert state == {o["metadata"]["name"]: o for o in final}
