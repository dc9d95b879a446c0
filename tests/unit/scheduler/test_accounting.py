"""PlacementBook: requests per node and waiting VMIs kept from single changes equal what a full
scan of all VMIs computes (so a scheduling round need not scan)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler_bridge.accounting import PlacementBook, compute_queue_order
from services.scheduler_bridge.resource_requests import Requests

A, B = Requests(100, 1024), Requests(200, 4096)


def test_a_vmi_that_holds_a_node_is_counted_once_and_moves_with_its_changes():
    book = PlacementBook()
    book.observe("ns/a", None, compute_queue_order("2026-01-01T00:00:00Z", "5"))
    assert book.pending_keys() == ["ns/a"] and book.placed() == {}
    book.observe("ns/a", ("n1", A), None)  # placed
    book.observe("ns/a", ("n1", A), None)  # a later status change on the same node
    assert book.pending_keys() == [] and book.placed() == {"n1": A}
    book.observe("ns/b", ("n1", B), None)
    assert book.placed() == {"n1": A + B}
    book.observe("ns/a", None, None)  # final phase: frees the node
    book.forget("ns/b")  # deleted
    assert book.placed() == {}


def test_an_assumed_placement_counts_on_its_node_until_released_and_is_not_pending():
    book = PlacementBook()
    book.observe("ns/a", None, compute_queue_order("t1", "5"))
    book.assume("ns/a", "n2", A)
    assert book.placed() == {"n2": A} and book.pending_keys() == []
    book.observe("ns/a", ("n2", A), None)  # the write's echo: not counted twice
    assert book.placed() == {"n2": A}
    book.release("ns/a")
    assert book.placed() == {"n2": A}


def test_a_failed_write_gives_the_resources_back_and_the_vmi_waits_again():
    book = PlacementBook()
    book.observe("ns/a", None, compute_queue_order("t1", "5"))
    book.assume("ns/a", "n2", A)
    book.release("ns/a")  # Conflict: nothing was written
    assert book.placed() == {} and book.pending_keys() == ["ns/a"]


@pytest.mark.parametrize("orders, expected", [
    pytest.param({"ns/b": ("2026-01-01T00:00:02Z", 9), "ns/a": ("2026-01-01T00:00:01Z", 12)}, ["ns/a", "ns/b"],
                 id="oldest-creation-first"),
    pytest.param({"ns/b": ("2026-01-01T00:00:01Z", 9), "ns/a": ("2026-01-01T00:00:01Z", 12)}, ["ns/b", "ns/a"],
                 id="same-second-by-resource-version"),
])
def test_pending_keys_come_oldest_first(orders, expected):
    book = PlacementBook()
    for key, order in orders.items():
        book.observe(key, None, order)
    assert book.pending_keys() == expected


def test_queue_order_of_odd_resource_versions():
    assert compute_queue_order(None, None) == ("", 0)
    assert compute_queue_order("t", "x") == ("t", 0)


KEYS = ["ns/a", "ns/b", "ns/c"]
NODES = ["n1", "n2"]
REQUESTS = [A, B]
step = st.one_of(
    st.tuples(st.just("observe"), st.sampled_from(KEYS),
              st.one_of(st.none(), st.tuples(st.sampled_from(NODES), st.sampled_from(REQUESTS))),
              st.one_of(st.none(), st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 9)))),
    st.tuples(st.just("forget"), st.sampled_from(KEYS)),
    st.tuples(st.just("assume"), st.sampled_from(KEYS), st.sampled_from(NODES), st.sampled_from(REQUESTS)),
    st.tuples(st.just("release"), st.sampled_from(KEYS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_incremental_totals_equal_a_full_recount(steps):
    book = PlacementBook()
    state: dict[str, tuple] = {}  # key -> (holding, order), as the informer cache would have it
    assumed: dict[str, tuple[str, Requests]] = {}
    for op, key, *args in steps:
        if op == "observe":
            book.observe(key, *args)
            state[key] = tuple(args)
        elif op == "forget":
            book.forget(key)
            state.pop(key, None)
        elif op == "assume":
            book.assume(key, *args)
            assumed[key] = tuple(args)
        else:
            book.release(key)
            assumed.pop(key, None)
    expected: dict[str, Requests] = {}
    for key in set(state) | set(assumed):
        counted = assumed.get(key) or state.get(key, (None, None))[0]
        if counted is not None:
            expected[counted[0]] = expected.get(counted[0], Requests(0, 0)) + counted[1]
    assert book.is_consistent_with(expected)
    waiting = sorted((order, key) for key, (_, order) in state.items() if order is not None and key not in assumed)
    assert book.pending_keys() == [key for _, key in waiting]
