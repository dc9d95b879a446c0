"""Node registration and heartbeat from libvirt's host facts, stored in a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from handler_helpers import GI, wait_until

from services.virt_handler.node import NodeHeartbeat, apply_node_status

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


async def test_registration_reads_capacity_and_cpu_from_libvirt(object_store, hypervisor):
    node = await apply_node_status(object_store, "node1", await hypervisor.node_info(), now=T0)
    assert node["metadata"]["name"] == "node1"
    assert node["status"]["capacity"] == {"cpu": "8", "memory": f"{16 * GI // 1024}Ki", "pods": "110"}
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    labels = node["metadata"]["labels"]
    assert labels["kubevirt.io/schedulable"] == "true"
    assert labels["cpu-model.node.kubevirt.io/x86_64"] == "true"
    assert labels["kubernetes.io/hostname"] == "node1"
    ready = node["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["lastHeartbeatTime"]) == ("Ready", "True", "2026-01-01T12:00:00Z")
    assert node["metadata"]["annotations"]["kubevirt.io/heartbeat"] == "2026-01-01T12:00:00Z"


async def test_heartbeat_renews_time_but_keeps_admin_fields(object_store, hypervisor):
    info = await hypervisor.node_info()
    node = await apply_node_status(object_store, "node1", info, now=T0)
    node["spec"]["taints"] = [{"key": "maintenance", "effect": "NoSchedule"}]
    node["metadata"]["labels"]["team"] = "blue"
    await object_store.update("nodes", node, has_status_subresource=False)
    later = await apply_node_status(object_store, "node1", info, now=T0 + timedelta(seconds=5))
    assert later["spec"]["taints"] == [{"key": "maintenance", "effect": "NoSchedule"}]
    assert later["metadata"]["labels"]["team"] == "blue"
    ready = later["status"]["conditions"][0]
    assert ready["lastHeartbeatTime"] == "2026-01-01T12:00:05Z"
    assert ready["lastTransitionTime"] == "2026-01-01T12:00:00Z"


async def test_heartbeat_task_beats_periodically(object_store, hypervisor):
    beat = NodeHeartbeat(object_store, "node1", hypervisor.node_info, interval=0.05)
    await beat.register()
    task = asyncio.get_running_loop().create_task(beat.run())
    try:
        await wait_until(lambda: beat.beats >= 3, timeout=5)
    finally:
        task.cancel()
    node = await object_store.get("nodes", None, "node1")
    assert node["status"]["conditions"][0]["status"] == "True"
