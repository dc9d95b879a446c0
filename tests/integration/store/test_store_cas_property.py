"""Property: concurrent updates from the same resourceVersion — exactly one wins, the others get
409 Conflict, and no acknowledged write is lost (hypothesis explores many interleavings over
several real client connections)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_objects import make_vm

from shared.errors import Conflict
from shared.natsserver import NatsServer
from shared.store import ObjectStore

VMS = "virtualmachines"
CLIENTS = 4


@pytest.fixture
async def clients(nats_server: NatsServer) -> AsyncIterator[list[ObjectStore]]:
    """Several independent connections to one set of buckets."""
    prefix = f"cas{uuid.uuid4().hex[:8]}_"
    stores = [await ObjectStore.connect([nats_server.url], bucket_prefix=prefix) for _ in range(CLIENTS)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


# one entry per writer: (client index, delay in ms before writing, increment)
writers = st.lists(
    st.tuples(st.integers(0, CLIENTS - 1), st.integers(0, 3), st.integers(1, 100)), min_size=2, max_size=8
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=writers)
async def test_concurrent_updates_from_one_version_exactly_one_wins(clients: list[ObjectStore], plan):
    name = f"cas-{uuid.uuid4().hex[:8]}"
    base = await clients[0].create(VMS, {**make_vm(name), "spec": {"counter": 0}})

    async def write(client: int, delay_ms: int, inc: int) -> str:
        await asyncio.sleep(delay_ms / 1000)
        try:
            done = await clients[client].update(VMS, {**base, "spec": {"counter": inc}})
        except Conflict:
            return "conflict"
        return done["metadata"]["resourceVersion"]

    results = await asyncio.gather(*(write(*w) for w in plan))
    winners = [(i, rv) for i, rv in enumerate(results) if rv != "conflict"]
    assert len(winners) == 1
    final = await clients[0].get(VMS, "default", name)
    index, rv = winners[0]
    assert final["spec"]["counter"] == plan[index][2]
    assert final["metadata"]["resourceVersion"] == rv
    assert final["metadata"]["generation"] == 2


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=writers)
async def test_read_modify_write_retries_lose_no_increment(clients: list[ObjectStore], plan):
    name = f"sum-{uuid.uuid4().hex[:8]}"
    await clients[0].create(VMS, {**make_vm(name), "spec": {"counter": 0}})
    conflicts = 0

    async def add(client: int, delay_ms: int, inc: int) -> None:
        nonlocal conflicts
        await asyncio.sleep(delay_ms / 1000)
        while True:
            current = await clients[client].get(VMS, "default", name)
            try:
                await clients[client].update(VMS, {**current, "spec": {"counter": current["spec"]["counter"] + inc}})
                return
            except Conflict:
                conflicts += 1

    await asyncio.gather(*(add(*w) for w in plan))
    final = await clients[0].get(VMS, "default", name)
    assert final["spec"]["counter"] == sum(inc for _, _, inc in plan)
    # every successful write is one revision of this key: create + one per writer
    history_len = final["metadata"]["generation"]
    assert history_len == 1 + len(plan)
