"""Helpers for control-loop tests (imported by name): Nodes as a handler registers them, VMIs as virt-controller
leaves them, polling."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from polling import wait_until as _wait_until
from services.virt_handler.hypervisor import NodeInfo
from services.virt_handler.node import apply_node_status

GI = 2**30
MI = 2**20
VMIS = "virtualmachineinstances"


def wait_until(check, timeout=15.0, interval=0.02):
    """:func:`polling.wait_until` with 15 s by default: the whole control loop is behind ``check``."""
    return _wait_until(check, timeout, interval)


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


VMS = "virtualmachines"
NS = "default"


def make_vm(name, *, run_strategy="Always", memory="64Mi", grace=30):
    """A VirtualMachine as a user applies it (after admission: runStrategy set)."""
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": run_strategy,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": memory}}},
                                           "terminationGracePeriodSeconds": grace}}}}


async def get_or_none(store, plural, name, namespace=NS):
    from shared.errors import NotFound
    try:
        return await store.get(plural, namespace, name)
    except NotFound:
        return None


def printable_status(vm):
    return ((vm or {}).get("status") or {}).get("printableStatus")


def phase_of(vmi):
    return ((vmi or {}).get("status") or {}).get("phase")


class InProcessNode:
    """One node's virt-handler (heartbeat + agent) in this process on a private test-driver host
    of the given size; ``stop()`` leaves domains running, as a killed handler would. ``pvc_root``:
    where claims' ``<namespace>/<claim>/disk.img`` live (default: the handler's)."""

    def __init__(self, store, name, directory, *, cpus=4, memory_bytes=4 * GI, pvc_root=None):
        from services.virt_handler.simulated_node import apply_test_node_file
        self.store = store
        self.name = name
        self.directory = directory
        self.uri = apply_test_node_file(directory / f"{name}.xml", cpus=cpus, memory_bytes=memory_bytes)
        self.pvc_root = pvc_root
        self.hypervisor = None
        self.agent = None
        self._beat = None

    async def start(self, hypervisor=None):
        from services.virt_handler.agent import AgentConfig, VmiAgent
        from services.virt_handler.hypervisor import Hypervisor
        from services.virt_handler.node import NodeHeartbeat
        if hypervisor is None:
            hypervisor = Hypervisor(self.uri)
            await hypervisor.open()
        self.hypervisor = hypervisor
        heartbeat = NodeHeartbeat(self.store, self.name, hypervisor.node_info, interval=1.0)
        await heartbeat.register()
        self._beat = asyncio.get_running_loop().create_task(heartbeat.run())
        self.agent = VmiAgent(self.store, hypervisor, AgentConfig(
            node_name=self.name, state_dir=self.directory / self.name, domain_type="test",
            resync_interval=2.0, shutdown_poll_interval=0.1, base_retry_delay=0.1, max_retry_delay=1.0,
            **({"pvc_root": self.pvc_root} if self.pvc_root is not None else {})),
            bus=self.store.bus)
        await self.agent.start()
        return self

    async def stop_agent(self):
        """Stop heartbeat and agent; the hypervisor (and its domains) stays."""
        if self._beat is not None:
            from shared.tasks import cancel_and_wait
            await cancel_and_wait([self._beat])
        if self.agent is not None:
            await self.agent.stop()

    async def close(self):
        await self.stop_agent()
        if self.hypervisor is not None:
            await self.hypervisor.close()
