"""shared.store.watch: events made without a selector carry the record still encoded and equal,
type for type and object for object, the events the decoding path makes."""

from __future__ import annotations

import msgspec

from shared.store.records import KvRecord
from shared.store.watch import EventComputer, WatchEvent


def _obj(name: str, n: int) -> bytes:
    return msgspec.json.encode({"metadata": {"name": name, "namespace": "ns"}, "spec": {"n": n}})


RECORDS = [
    KvRecord("ns.a", 5, 3, False, _obj("a", 1)),            # first sight of a key older than the watch
    KvRecord("ns.b", 6, 0, False, _obj("b", 1), True),      # created
    KvRecord("ns.b", 7, 6, False, _obj("b", 2)),            # modified
    KvRecord("ns.a", 8, 5, True, _obj("a", 1)),             # deleted, last state carried
    KvRecord("ns.c", 9, 0, False, _obj("c", 1), True),
    KvRecord("ns.c", 10, 9, True, b""),                     # deleted by a marker without payload
    KvRecord("ns.d", 11, 0, False, b"", True),              # nothing to show
]


async def _events(selects_all: bool) -> list[WatchEvent | None]:
    async def no_previous(_: int) -> None:
        return None

    computer = EventComputer(5, lambda obj: True, needs_previous=False, fetch_previous=no_previous,
                             selects_all=selects_all)
    return [await computer.compute(rec) for rec in RECORDS]


async def test_encoded_events_equal_decoded_ones():
    lazy, eager = await _events(True), await _events(False)
    assert lazy == eager
    assert [e.type if e else None for e in lazy] == ["MODIFIED", "ADDED", "MODIFIED", "DELETED", "ADDED",
                                                   "DELETED", None]
    assert lazy[1] is not None and lazy[1].value is not None and lazy[1].revision == 6
    assert lazy[1].object["metadata"]["resourceVersion"] == "6"
    assert lazy[5] is not None and lazy[5].object["metadata"] == {"name": "c", "namespace": "ns",
                                                                    "resourceVersion": "10"}


def test_watch_event_compares_by_type_and_object():
    value = _obj("a", 1)
    lazy = WatchEvent("ADDED", value=value, revision=4)
    decoded = msgspec.json.decode(value)
    decoded["metadata"]["resourceVersion"] = "4"
    assert lazy == WatchEvent("ADDED", decoded)
    assert lazy.to_dict() == {"type": "ADDED", "object": decoded}
    assert lazy != WatchEvent("MODIFIED", decoded)
