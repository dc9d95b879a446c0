"""Leader election on a real store, with fake monotonic clocks for exact expiry."""
import asyncio

import pytest

from shared.leader import LeaderElector


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def elector(store, identity, clock):
    return LeaderElector(store, identity, lease_duration=15, renew_deadline=10, retry_period=2, monotonic=clock)


async def test_one_leader_then_takeover_exactly_when_the_lease_lapses(object_store):
    clock_a, clock_b = FakeMonotonic(), FakeMonotonic()
    a, b = elector(object_store, "a", clock_a), elector(object_store, "b", clock_b)
    assert await a.try_acquire_or_renew() is True
    assert await b.try_acquire_or_renew() is False
    clock_b.now += 14.9  # A stopped renewing; not yet lapsed on B's clock
    assert await b.try_acquire_or_renew() is False
    clock_b.now += 0.2
    assert await b.try_acquire_or_renew() is True
    lease = await object_store.get("leases", "kubevirt", "virt-controller")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert await a.try_acquire_or_renew() is False  # the old leader sees a fresh holder


async def test_renewals_keep_the_lease(object_store):
    clock_a, clock_b = FakeMonotonic(), FakeMonotonic()
    a, b = elector(object_store, "a", clock_a), elector(object_store, "b", clock_b)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    for _ in range(5):
        clock_a.now += 10
        clock_b.now += 10
        assert await a.try_acquire_or_renew()  # each renewal changes the record B watches
        assert not await b.try_acquire_or_renew()


async def test_a_clean_stop_releases_the_lease_for_an_immediate_handover(object_store):
    a = LeaderElector(object_store, "a", lease_duration=3, renew_deadline=2, retry_period=0.2)
    b = LeaderElector(object_store, "b", lease_duration=3, renew_deadline=2, retry_period=0.2)
    led = asyncio.Event()

    async def lead():
        led.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(a.run(lead))
    await asyncio.wait_for(led.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lease = await object_store.get("leases", "kubevirt", "virt-controller")
    assert lease["spec"]["holderIdentity"] == ""
    assert await b.try_acquire_or_renew() is True


def test_timing_must_be_ordered():
    with pytest.raises(ValueError):
        LeaderElector(None, "x", lease_duration=5, renew_deadline=6, retry_period=1)
