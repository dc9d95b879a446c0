"""scheduler-bridge places live-migration targets (VMIMs in Scheduling) on a real nats-server:
the chosen node, addedNodeSelector, tainted/cordoned nodes, never the source, the unschedulable
Event, the resource reservation on the target and the trace span."""

from __future__ import annotations

import asyncio

import pytest
from loop_helpers import GI, MI, VMIS, make_scheduling_vmi, register_node, wait_until

from shared import tracing

pytestmark = pytest.mark.timeout(90)

VMIMS = "virtualmachineinstancemigrations"
NODES = "nodes"
EVENTS = "events"
NS = "default"


async def running_vmi(store, name, node, *, memory="1Gi", **spec_extra):
    """A VMI Running on ``node`` (as the handler leaves it)."""
    body = make_scheduling_vmi(name, memory=memory, **spec_extra)
    body["metadata"]["labels"] = {"kubevirt.io/nodeName": node}
    body["status"] = {"phase": "Running", "nodeName": node,
                      "phaseTransitionTimestamps": [{"phase": "Running",
                                                     "phaseTransitionTimestamp": "2026-01-01T00:00:01.000000Z"}]}
    return await store.create(VMIS, body)


async def scheduling_vmim(store, name, vmi_name, *, added=None, annotations=None):
    """A VMIM as virt-migration leaves it in phase Scheduling."""
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": NS, "labels": {"kubevirt.io/vmi-name": vmi_name},
                         "finalizers": ["kubevirt.io/migrationJobFinalize"], "annotations": annotations or {}},
            "spec": {"vmiName": vmi_name, **({"addedNodeSelector": added} if added else {})},
            "status": {"phase": "Scheduling",
                       "phaseTransitionTimestamps": [
                           {"phase": "Pending", "phaseTransitionTimestamp": "2026-01-01T00:00:02.000000Z"},
                           {"phase": "Scheduling", "phaseTransitionTimestamp": "2026-01-01T00:00:03.000000Z"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    return await store.create(VMIMS, body)


async def edit_node(store, name, *, labels=None, taints=None, unschedulable=None):
    node = await store.get(NODES, None, name)
    if labels:
        node["metadata"]["labels"] = {**node["metadata"].get("labels", {}), **labels}
    if taints is not None:
        node.setdefault("spec", {})["taints"] = taints
    if unschedulable is not None:
        node.setdefault("spec", {})["unschedulable"] = unschedulable
    return await store.update(NODES, node, has_status_subresource=False)


async def target_of(store, name):
    vmim = await store.get(VMIMS, NS, name)
    state = (vmim.get("status") or {}).get("migrationState") or {}
    return vmim if state.get("targetNode") else None


async def events_of(store, name):
    items, _ = await store.list(EVENTS, NS)
    return [e for e in items if e["involvedObject"].get("name") == name]


async def set_status(store, plural, name, change):
    for _ in range(10):
        obj = await store.get(plural, NS, name)
        change(obj["status"])
        try:
            return await store.update(plural, obj, subresource="status")
        except Exception:  # noqa: BLE001 - Conflict with the bridge: read again
            await asyncio.sleep(0.05)
    raise AssertionError(f"could not update {plural} {name}")


async def test_target_is_another_node_and_other_status_fields_stay(object_store, bridge):
    for name in ("a", "b"):
        await register_node(object_store, name)
    await running_vmi(object_store, "v", "a")
    await scheduling_vmim(object_store, "m", "v")
    vmim = await wait_until(lambda: target_of(object_store, "m"))
    status = vmim["status"]
    assert status["migrationState"] == {"targetNode": "b", "sourceNode": "a"}
    assert status["phase"] == "Scheduling"
    assert [p["phase"] for p in status["phaseTransitionTimestamps"]] == ["Pending", "Scheduling"]
    assert status["conditions"] == [{"type": "Ready", "status": "True"}]
    assert vmim["spec"] == {"vmiName": "v"}
    assert vmim["metadata"]["finalizers"] == ["kubevirt.io/migrationJobFinalize"]
    vmi = await object_store.get(VMIS, NS, "v")
    assert vmi["status"]["nodeName"] == "a"  # the bridge never touches a running VMI


async def test_added_node_selector_narrows_and_tainted_or_cordoned_nodes_are_skipped(object_store, bridge):
    for name in ("a", "b", "c", "d", "e"):
        await register_node(object_store, name)
    await edit_node(object_store, "b", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
                    labels={"zone": "z2"})
    await edit_node(object_store, "c", unschedulable=True, labels={"zone": "z2"})
    await edit_node(object_store, "d", labels={"zone": "z2"})
    await edit_node(object_store, "a", labels={"zone": "z2"})  # the source matches too: never chosen
    await running_vmi(object_store, "v", "a")
    await scheduling_vmim(object_store, "m", "v", added={"zone": "z2"})
    vmim = await wait_until(lambda: target_of(object_store, "m"))
    assert vmim["status"]["migrationState"]["targetNode"] == "d"  # e is free but outside the selector


async def test_the_source_is_never_chosen_and_unschedulable_is_one_warning_event(object_store, bridge):
    await register_node(object_store, "a")
    await running_vmi(object_store, "v", "a")
    await scheduling_vmim(object_store, "m", "v")
    events = await wait_until(lambda: events_of(object_store, "m"))
    assert [(e["type"], e["reason"], e["message"]) for e in events] == [
        ("Warning", "FailedScheduling", "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules.")]
    assert events[0]["involvedObject"]["kind"] == "VirtualMachineInstanceMigration"
    assert events[0]["source"]["component"] == "scheduler-bridge"
    await asyncio.sleep(2.5)  # more than two retry rounds: the same message is not recorded again
    events = await events_of(object_store, "m")
    assert len(events) == 1 and events[0]["count"] == 1
    vmim = await object_store.get(VMIMS, NS, "m")
    assert "migrationState" not in vmim["status"] and vmim["status"]["phase"] == "Scheduling"
    # a node too small for the VMI: a new message, a second event; then room: placed
    await register_node(object_store, "b", memory_bytes=512 * MI)
    events = await wait_until(lambda: _has_events(object_store, "m", 2))
    assert events[-1]["message"] == ("0/2 nodes are available: 1 Insufficient memory, "
                                     "1 node(s) didn't match pod anti-affinity rules.")
    await register_node(object_store, "c")
    vmim = await wait_until(lambda: target_of(object_store, "m"))
    assert vmim["status"]["migrationState"] == {"targetNode": "c", "sourceNode": "a"}


async def _has_events(store, name, count):
    events = await events_of(store, name)
    return events if len(events) >= count else None


async def test_the_target_is_reserved_until_the_migration_is_final(object_store, bridge):
    await register_node(object_store, "a", memory_bytes=1 * GI)  # full with v
    await register_node(object_store, "b", memory_bytes=int(2.5 * GI))
    await running_vmi(object_store, "v", "a", memory="1Gi")
    await scheduling_vmim(object_store, "m", "v")
    vmim = await wait_until(lambda: target_of(object_store, "m"))
    assert vmim["status"]["migrationState"]["targetNode"] == "b"
    assert bridge.compute_placed()["b"].memory_bytes == GI  # reserved for v
    # w fits on b only without the reservation (2.5Gi - 1Gi < 2Gi): it must wait
    await object_store.create(VMIS, make_scheduling_vmi("w", memory="2Gi"))
    waiting = await wait_until(lambda: _unschedulable_message(object_store, "w"))
    assert waiting == "0/2 nodes are available: 2 Insufficient memory."
    # the ownership switch: v now holds b, the VMIM is not final yet: counted once on b
    await set_status(object_store, VMIMS, "m", lambda s: s.update(phase="Running"))
    await set_status(object_store, VMIS, "v", lambda s: s.update(nodeName="b"))
    await wait_until(lambda: _placed_equals(bridge, {"b": GI}))
    small = make_scheduling_vmi("x", memory="1280Mi", nodeSelector={"kubernetes.io/hostname": "b"})
    await wait_until(lambda: _node_has_label(object_store, "b", "kubernetes.io/hostname"))
    await object_store.create(VMIS, small)  # 2.5Gi - 1Gi (v once) = 1.5Gi >= 1.25Gi
    placed = await wait_until(lambda: _node_name(object_store, "x"))
    assert placed == "b"
    # final: the reservation goes; v holds b for real
    await set_status(object_store, VMIMS, "m", lambda s: s.update(phase="Succeeded"))
    await wait_until(lambda: _no_reservation(bridge))
    assert await _placed_equals(bridge, {"b": GI + 1280 * MI})


async def test_a_failed_migration_gives_the_target_back(object_store, bridge):
    await register_node(object_store, "a", memory_bytes=1 * GI)
    await register_node(object_store, "b", memory_bytes=int(2.5 * GI))
    await running_vmi(object_store, "v", "a", memory="1Gi")
    await scheduling_vmim(object_store, "m", "v")
    await wait_until(lambda: target_of(object_store, "m"))
    await object_store.create(VMIS, make_scheduling_vmi("w", memory="2Gi"))
    await wait_until(lambda: _unschedulable_message(object_store, "w"))
    await set_status(object_store, VMIMS, "m", lambda s: s.update(phase="Failed"))
    assert await wait_until(lambda: _node_name(object_store, "w")) == "b"


async def test_the_decision_is_a_span_under_the_vmim_trace(object_store):
    from services.scheduler_bridge.service import SchedulerBridge

    memory = tracing.use_in_memory_exporter()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    running = SchedulerBridge(object_store, retry_interval=1.0)
    try:
        await running.start()
        for name in ("a", "b"):
            await register_node(object_store, name)
        await running_vmi(object_store, "v", "a")
        await scheduling_vmim(object_store, "m", "v",
                              annotations={tracing.TRACEPARENT_ANNOTATION: f"00-{trace_id}-00f067aa0ba902b7-01"})
        await wait_until(lambda: target_of(object_store, "m"))
        await asyncio.to_thread(tracing.force_flush)
        spans = [s for s in memory.get_finished_spans() if s.name == "place migration target"]
        assert len(spans) == 1
        span = spans[0]
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.attributes["k8s.node.name"] == "b"
        assert span.attributes["kubevirt.migration.source_node"] == "a"
    finally:
        await running.stop()
        tracing.reset()


async def _unschedulable_message(store, name):
    vmi = await store.get(VMIS, NS, name)
    conds = {c["type"]: c for c in (vmi.get("status") or {}).get("conditions") or []}
    return (conds.get("PodScheduled") or {}).get("message")


async def _node_name(store, name):
    vmi = await store.get(VMIS, NS, name)
    return (vmi.get("status") or {}).get("nodeName")


async def _node_has_label(store, name, label):
    node = await store.get(NODES, None, name)
    return label in (node["metadata"].get("labels") or {})


async def _no_reservation(bridge):
    return bridge.book.reserving_migrations() == {}


async def _placed_equals(bridge, expected):
    placed = {node: r.memory_bytes for node, r in bridge.compute_placed().items() if r.memory_bytes}
    return placed == expected


class RacingStore:
    """The real store, except that just before the bridge's first VMIM status write another writer
    (as virt-migration would) changes the VMIM: the bridge's CAS meets a real Conflict."""

    def __init__(self, store):
        self._store = store
        self.raced = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def update(self, plural, obj, **kwargs):
        if plural == VMIMS and not self.raced:
            self.raced += 1
            other = await self._store.get(VMIMS, NS, obj["metadata"]["name"])
            other["status"]["conditions"].append({"type": "migrationAbortRequested", "status": "False"})
            await self._store.update(VMIMS, other, subresource="status")
        return await self._store.update(plural, obj, **kwargs)


async def test_a_conflicting_writer_keeps_its_field_and_the_target_is_written_on_retry(object_store):
    from services.scheduler_bridge.service import SchedulerBridge

    racing = RacingStore(object_store)
    running = SchedulerBridge(racing, retry_interval=1.0)
    try:
        await running.start()
        for name in ("a", "b"):
            await register_node(object_store, name)
        await running_vmi(object_store, "v", "a")
        await scheduling_vmim(object_store, "m", "v")
        vmim = await wait_until(lambda: target_of(object_store, "m"))
    finally:
        await running.stop()
    assert racing.raced == 1
    assert vmim["status"]["migrationState"] == {"targetNode": "b", "sourceNode": "a"}
    assert [c["type"] for c in vmim["status"]["conditions"]] == ["Ready", "migrationAbortRequested"]
    assert running.migrations.targets_written == 1
