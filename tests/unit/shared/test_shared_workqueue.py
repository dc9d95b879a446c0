"""The work queue: dedup, no parallel processing of one key, delays and per-key backoff."""
import asyncio

import pytest

from shared.workqueue import WorkQueue, compute_item_delay


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        pytest.param(0, 0.005, id="first-retry-5ms"),
        pytest.param(1, 0.01, id="second-10ms"),
        pytest.param(10, 5.12, id="eleventh-5.12s"),
        pytest.param(20, 300.0, id="capped"),
        pytest.param(1000, 300.0, id="huge-capped"),
        pytest.param(-3, 0.005, id="negative-as-zero"),
    ],
)
def test_item_delay_doubles_per_failure_up_to_the_cap(failures, expected):
    assert compute_item_delay(failures) == pytest.approx(expected)


async def test_a_queued_key_is_queued_once():
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_a_key_added_while_processing_comes_back_after_done():
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while a worker holds it
    assert len(q) == 0, "must not be handed to a second worker"
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"


async def test_add_after_delays_and_keeps_the_earliest_time():
    q = WorkQueue()
    q.add_after("a", 0.2)
    q.add_after("a", 0.05)
    q.add_after("a", 0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert 0.04 <= loop.time() - start < 0.2


async def test_rate_limited_adds_back_off_per_key_until_forget():
    q = WorkQueue(base_delay=0.01, max_delay=1.0)
    assert q.add_rate_limited("a") == 0.01
    assert q.add_rate_limited("a") == 0.02
    assert q.add_rate_limited("b") == 0.01
    assert q.num_requeues("a") == 2
    q.forget("a")
    assert q.num_requeues("a") == 0
    assert q.add_rate_limited("a") == 0.01


async def test_shutdown_releases_waiting_workers():
    q = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.wait_for(waiter, 1) is None
    q.add("x")
    assert len(q) == 0
