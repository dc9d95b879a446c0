"""scheduler-bridge as a service on a real nats-server: placement writes, accounting, and
crash safety of the real process under kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from loop_helpers import MI, VMIS, conditions_of, make_scheduling_vmi, register_node, wait_until

from services.scheduler_bridge.manager import BridgeManager
from services.scheduler_bridge.resource_requests import compute_vmi_requests
from services.scheduler_bridge.service import SchedulerBridge
from shared.api.vmi import VirtualMachineInstance

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]


async def placed(store, name):
    vmi = await store.get(VMIS, "default", name)
    return vmi if (vmi.get("status") or {}).get("nodeName") else None


async def test_a_vmi_is_placed_with_node_name_label_and_scheduled_phase(object_store, bridge):
    await register_node(object_store, "n1")
    await object_store.create(VMIS, make_scheduling_vmi("a"))
    vmi = await wait_until(lambda: placed(object_store, "a"))
    assert vmi["status"]["nodeName"] == "n1"
    assert vmi["status"]["phase"] == "Scheduled"
    assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == "n1"
    assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == ["Scheduling", "Scheduled"]


async def test_capacity_is_shared_and_freed(object_store, bridge):
    await register_node(object_store, "n1", memory_bytes=1024 * MI)
    for name in ("a", "b", "c"):
        await object_store.create(VMIS, make_scheduling_vmi(name, memory="400Mi"))
    await wait_until(lambda: _count_placed(object_store, 2))
    waiting = await wait_until(lambda: _unschedulable(object_store))
    assert conditions_of(waiting)["PodScheduled"]["message"] == "0/1 nodes are available: 1 Insufficient memory."
    first = next(v for v in (await object_store.list(VMIS))[0] if (v.get("status") or {}).get("nodeName"))
    first["status"]["phase"] = "Succeeded"  # a guest ends: its memory is free again
    await object_store.update(VMIS, first, subresource="status")
    await wait_until(lambda: _placed_name(object_store, waiting["metadata"]["name"]))


async def _count_placed(store, count):
    items, _ = await store.list(VMIS)
    return sum(1 for v in items if (v.get("status") or {}).get("nodeName")) == count


async def _unschedulable(store):
    items, _ = await store.list(VMIS)
    return next((v for v in items if "PodScheduled" in conditions_of(v)), None)


async def _placed_name(store, name):
    return await placed(store, name)


def start_bridge_process(nats_url, prefix, log_path):
    # a stable identity: the restarted bridge takes its own lease back at once
    return subprocess.Popen([sys.executable, "-m", "services.scheduler_bridge.main", "--nats", nats_url,
                             "--bucket-prefix", prefix, "--log-level", "WARNING", "--id", "bridge-kill-test"], cwd=ROOT,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


async def test_kill_9_of_the_bridge_places_nothing_twice(object_store, nats_server, tmp_path):
    nodes = {"n1": 8192 * MI, "n2": 8192 * MI}
    for name, memory in nodes.items():
        await register_node(object_store, name, cpus=16, memory_bytes=memory)
    history: dict[str, list[str]] = {}

    async def record():
        async for event in object_store.watch(VMIS):
            node = (event.object.get("status") or {}).get("nodeName")
            seen = history.setdefault(event.object["metadata"]["uid"], [])
            if node and (not seen or seen[-1] != node):
                seen.append(node)

    recorder = asyncio.get_running_loop().create_task(record())
    proc = start_bridge_process(nats_server.url, object_store.prefix, tmp_path / "bridge-1.log")
    try:
        total = 150  # 150 x 100Mi fit in 2 x 8Gi; nodes must never be overbooked
        names = [f"vmi-{i:02d}" for i in range(total)]
        await asyncio.gather(*(object_store.create(VMIS, make_scheduling_vmi(n, memory="100Mi")) for n in names))
        await wait_until(lambda: _some_placed(object_store), timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst
        proc.wait(10)
        placed_before_restart = sum(1 for v in (await object_store.list(VMIS))[0] if v["status"].get("nodeName"))
        assert placed_before_restart < total, "the kill came too late to interrupt the burst"
        proc = start_bridge_process(nats_server.url, object_store.prefix, tmp_path / "bridge-2.log")
        await wait_until(lambda: _count_placed(object_store, total), timeout=60)
        await asyncio.sleep(0.5)  # let any (wrong) second placement show up in the watch
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        recorder.cancel()
    items, _ = await object_store.list(VMIS)
    assert len(items) == total
    for vmi in items:
        assert history[vmi["metadata"]["uid"]] == [vmi["status"]["nodeName"]]  # one node, never changed
        assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == ["Scheduling", "Scheduled"]
    used: dict[str, int] = {}
    for vmi in items:
        used[vmi["status"]["nodeName"]] = used.get(vmi["status"]["nodeName"], 0) + \
            compute_vmi_requests(msgspec.convert(vmi, VirtualMachineInstance)).memory_bytes
    assert all(used[node] <= nodes[node] for node in used)


async def _some_placed(store):
    items, _ = await store.list(VMIS)
    return any((v.get("status") or {}).get("nodeName") for v in items)


async def test_only_the_leader_places_and_a_standby_takes_over(object_store):
    await register_node(object_store, "n1")
    timings = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
    managers = [BridgeManager(object_store, SchedulerBridge(object_store, retry_interval=1.0), f"bridge-{i}", **timings)
                for i in (1, 2)]
    runs = [asyncio.get_running_loop().create_task(m.run()) for m in managers]
    try:
        await wait_until(lambda: all(m.has_synced() for m in managers) and any(m.is_leader for m in managers))
        leader = next(m for m in managers if m.is_leader)
        standby = next(m for m in managers if m is not leader)
        assert not standby.is_leader and standby.bridge.synced.is_set()
        await object_store.create(VMIS, make_scheduling_vmi("first"))
        await wait_until(lambda: placed(object_store, "first"))
        assert leader.bridge.placements == 1 and standby.bridge.placements == 0

        runs[managers.index(leader)].cancel()  # the leader stops and releases the lease
        await asyncio.gather(runs[managers.index(leader)], return_exceptions=True)
        await wait_until(lambda: standby.is_leader, timeout=10)
        await object_store.create(VMIS, make_scheduling_vmi("second"))
        vmi = await wait_until(lambda: placed(object_store, "second"))
        assert vmi["status"]["nodeName"] == "n1" and standby.bridge.placements == 1
        lease = await object_store.get("leases", "kubevirt", "scheduler-bridge")
        assert lease["spec"]["holderIdentity"] == standby.identity
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for manager in managers:
            await manager.bridge.stop()
