"""virt-migration on a real store: the limits with 12 VMIMs at once from 2 nodes, evacuation of
a tainted Node, a limit change through the KubeVirt object, and leader fail-over mid-migration."""
from __future__ import annotations

import asyncio

from migration_controller_helpers import (
    NS,
    VMIMS,
    VMIS,
    ConcurrencyWatch,
    StandInAgents,
    bridge_places,
    change,
    create_vmi,
    create_vmim,
    handler_writes,
    now_text,
    start_manager,
    state_of,
    stop_manager,
    target_takes_ownership,
    vmim_phase,
    wait_for,
)


def node_body(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


async def all_succeeded(store, count):
    items, _ = await store.list(VMIMS, NS)
    phases = [(m.get("status") or {}).get("phase") for m in items]
    return len(phases) == count and all(p == "Succeeded" for p in phases)


async def test_twelve_vmims_from_two_nodes_never_exceed_the_limits(object_store, migration):
    store = object_store
    sources = {f"vm{i}": ("node-a" if i < 6 else "node-b") for i in range(12)}
    for name, node in sources.items():
        await create_vmi(store, name, node)
    watch = ConcurrencyWatch(store, sources.__getitem__).start()
    await asyncio.sleep(0.2)  # the watch is listening
    with StandInAgents(store, target=lambda source: "node-c", transfer=0.4):
        await asyncio.gather(*(create_vmim(store, f"mig-{name}", name) for name in sources))
        await wait_for(lambda: all_succeeded(store, 12), timeout=60, what="12 migrations Succeeded")
    await watch.stop()
    print(f"max concurrent: total {watch.max_total}, per source node {dict(watch.max_per_node)}")
    assert watch.max_total <= 5
    assert max(watch.max_per_node.values()) <= 2
    assert watch.max_per_node["node-a"] == 2 and watch.max_per_node["node-b"] == 2  # the limits were used
    assert watch.max_total == 4  # two nodes x two outbound: the per-node limit binds first
    for name in sources:
        assert (await store.get(VMIS, NS, name))["status"]["nodeName"] == "node-c"


async def test_cluster_limit_from_the_kubevirt_object(object_store, migration):
    store = object_store
    await store.create("kubevirts", {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                                     "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                                     "spec": {"configuration": {"migrations": {"parallelMigrationsPerCluster": 3,
                                                                               "parallelOutboundMigrationsPerNode": 5}}}})
    await wait_for(lambda: _limit_seen(migration, 3), what="KubeVirt object in the cache")
    sources = {f"vm{i}": f"node-{i % 3}" for i in range(9)}
    for name, node in sources.items():
        await create_vmi(store, name, node)
    watch = ConcurrencyWatch(store, sources.__getitem__).start()
    await asyncio.sleep(0.2)
    with StandInAgents(store, target=lambda source: "node-z", transfer=0.3):
        await asyncio.gather(*(create_vmim(store, f"mig-{name}", name) for name in sources))
        await wait_for(lambda: all_succeeded(store, 9), timeout=60, what="9 migrations Succeeded")
    await watch.stop()
    assert watch.max_total == 3


async def _limit_seen(manager, value):
    return manager.migrations.cluster_config().parallel_migrations_per_cluster == value


async def test_a_tainted_node_is_evacuated_within_the_limits(object_store, migration):
    store = object_store
    for node in ("node-a", "node-b"):
        await store.create("nodes", node_body(node), namespaced=False)
    names = [f"vm{i}" for i in range(5)]
    for name in names:
        await create_vmi(store, name, "node-a", eviction="LiveMigrate")
    await create_vmi(store, "pinned", "node-a", eviction="LiveMigrate", migratable=False)
    await create_vmi(store, "stays", "node-a", eviction="None")
    watch = ConcurrencyWatch(store, lambda vmi: "node-a").start()
    await asyncio.sleep(0.2)
    with StandInAgents(store, target=lambda source: "node-b", transfer=0.3):
        def taint(node: dict) -> None:
            node["spec"]["taints"] = [{"key": "kubevirt.io/drain", "effect": "NoSchedule"}]
        await change(store, "nodes", "node-a", taint, subresource=None, namespace=None)

        async def evacuated():
            vmis = [await store.get(VMIS, NS, n) for n in names]
            return all(v["status"]["nodeName"] == "node-b" and "evacuationNodeName" not in v["status"]
                       for v in vmis)
        await wait_for(evacuated, timeout=60, what="node-a evacuated")
    await watch.stop()
    assert watch.max_per_node["node-a"] == 2
    items, _ = await store.list(VMIMS, NS)
    assert len(items) == 5
    assert all(m["metadata"]["name"].startswith("kubevirt-evacuation-") and
               m["metadata"]["annotations"]["kubevirt.io/evacuationMigration"] == "node-a" for m in items)
    assert (await store.get(VMIS, NS, "pinned"))["status"]["nodeName"] == "node-a"
    assert (await store.get(VMIS, NS, "stays"))["status"]["nodeName"] == "node-a"
    events, _ = await store.list("events", NS)
    blocked = [e for e in events if e["involvedObject"]["name"] == "pinned"]
    assert [(e["type"], e["reason"]) for e in blocked] == [("Warning", "EvictionBlocked")]
    created = [e for e in events if e["reason"] == "SuccessfulCreate" and e["involvedObject"]["kind"] ==
               "VirtualMachineInstance"]
    assert len(created) == 5
    samples = migration.migration_samples()
    assert samples.non_evictable[("node-a", NS, "pinned")] == 1.0
    assert samples.non_evictable[("node-b", NS, "vm0")] == 0.0


async def test_leader_fail_over_mid_migration(object_store):
    store = object_store
    first, first_task = await start_manager(store, "mig-a")
    await wait_for(lambda: _leading(first), what="first leader")
    second, second_task = await start_manager(store, "mig-b")
    try:
        await create_vmi(store, "vm1", "node-a")
        vmim = await create_vmim(store, "mig1", "vm1")
        uid = vmim["metadata"]["uid"]
        await wait_for(lambda: _phase(store, "mig1", "Scheduling"), what="Scheduling")
        await bridge_places(store, "mig1", "node-b", "node-a")
        await wait_for(lambda: _phase(store, "mig1", "PreparingTarget"), what="PreparingTarget")
        await handler_writes(store, "vm1", uid, targetNodeAddress="127.0.0.1")
        await wait_for(lambda: _phase(store, "mig1", "TargetReady"), what="TargetReady")
        assert first.is_leader and not second.is_leader
        await stop_manager(first_task)  # the leader stops; the standby takes the lease
        await wait_for(lambda: _leading(second), what="second leader")
        await handler_writes(store, "vm1", uid, startTimestamp=now_text(), mode="PreCopy")
        await wait_for(lambda: _phase(store, "mig1", "Running"), what="Running under the new leader")
        await handler_writes(store, "vm1", uid, completed=True, endTimestamp=now_text())
        await target_takes_ownership(store, "vm1", uid)
        await wait_for(lambda: _phase(store, "mig1", "Succeeded"), what="Succeeded")
        vmim = await store.get(VMIMS, NS, "mig1")
        assert [s["phase"] for s in vmim["status"]["phaseTransitionTimestamps"]] == [
            "Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
        lease = await store.get("leases", "kubevirt", "virt-migration")
        assert lease["spec"]["holderIdentity"] == "mig-b"
        assert state_of(await store.get(VMIS, NS, "vm1"))["completed"] is True
    finally:
        await stop_manager(second_task)
        if not first_task.done():
            await stop_manager(first_task)


async def _leading(manager):
    return manager.is_leader


async def _phase(store, name, phase):
    return await vmim_phase(store, name) == phase
