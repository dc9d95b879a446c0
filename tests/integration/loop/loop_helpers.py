"""Helpers for control-loop tests (imported by name): Nodes as a handler registers them, VMIs as virt-controller
leaves them, polling."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from services.virt_handler.hypervisor import NodeInfo
from services.virt_handler.node import apply_node_status

GI = 2**30
MI = 2**20
VMIS = "virtualmachineinstances"


async def wait_until(check, timeout=15.0, interval=0.02):
    """Poll the async or plain callable ``check`` until it returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def register_node(store, name, *, cpus=4, memory_bytes=4 * GI):
    """Register a Node exactly as virt-handler does, for a host of the given size."""
    info = NodeInfo(cpus=cpus, memory_bytes=memory_bytes, cpu_model="x86_64", cpu_vendor="", cpu_features=(),
                    arch="x86_64", hostname=name, mhz=2000)
    return await apply_node_status(store, name, info, now=datetime.now(timezone.utc))


def make_scheduling_vmi(name, *, memory="256Mi", namespace="default", **spec_extra):
    """A VMI in phase Scheduling, as virt-controller hands it to scheduler-bridge."""
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": memory}}}, **spec_extra},
        "status": {"phase": "Scheduling",
                   "phaseTransitionTimestamps": [{"phase": "Scheduling",
                                                  "phaseTransitionTimestamp": "2026-01-01T00:00:00.000000Z"}]},
    }


def conditions_of(vmi):
    return {c["type"]: c for c in ((vmi or {}).get("status") or {}).get("conditions") or []}
