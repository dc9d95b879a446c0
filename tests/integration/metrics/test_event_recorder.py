"""EventRecorder on a real ObjectStore: a repeat bumps count and lastTimestamp of one Event;
a different message makes a new Event; the store refusing a write loses nothing for the caller."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.events_recorder import EVENTS_PLURAL, EventRecorder

VM = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
      "metadata": {"name": "rec-vm", "namespace": "default", "uid": "uid-1"}}


async def test_repeats_are_counted_on_one_event(object_store):
    times = iter([datetime(2026, 1, 1, 12, 0, s, tzinfo=timezone.utc) for s in (0, 5, 9)])
    recorder = EventRecorder(object_store, "virt-controller", host="node-a", clock=lambda: next(times))
    first = await recorder.record(VM, "Warning", "FailedCreate", "quota")
    again = await recorder.record(VM, "Warning", "FailedCreate", "quota")
    other = await recorder.record(VM, "Warning", "FailedCreate", "another reason")
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert (again["count"], again["firstTimestamp"], again["lastTimestamp"]) == \
        (2, "2026-01-01T12:00:00Z", "2026-01-01T12:00:05Z")
    assert other["metadata"]["name"] != first["metadata"]["name"] and other["count"] == 1
    items, _ = await object_store.list(EVENTS_PLURAL, "default")
    assert sorted((e["message"], e["count"]) for e in items) == [("another reason", 1), ("quota", 2)]
    assert items[0]["source"] == {"component": "virt-controller", "host": "node-a"}


async def test_an_event_deleted_meanwhile_is_recorded_anew(object_store):
    recorder = EventRecorder(object_store, "virt-controller",
                             clock=lambda: datetime.now(timezone.utc) - timedelta(seconds=1))
    first = await recorder.record(VM, "Normal", "Started", "VirtualMachineInstance started.")
    await object_store.delete(EVENTS_PLURAL, "default", first["metadata"]["name"])
    second = await recorder.record(VM, "Normal", "Started", "VirtualMachineInstance started.")
    assert second is not None and second["count"] == 1 and second["metadata"]["name"] != first["metadata"]["name"]
