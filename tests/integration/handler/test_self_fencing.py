"""Self-fencing on a real store and libvirt's test driver: the nats-server is stopped to cut the
handler off; its guest must be destroyed within --fence-after, stay destroyed, and be reported
Failed (NodeUnresponsive, Event SelfFenced) once the store is back; a clean stop hands the fence
over instead, and a stop while cut off fences before it ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from handler_helpers import NODE, VMIS, get_vmi, make_vmi, phase_of, wait_until
from services.virt_handler.agent import VmiAgent
from services.virt_handler.fencing import SelfFence
from services.virt_handler.node import NodeHeartbeat
from shared.node_fencing import FENCE_AFTER_ANNOTATION
from shared.store import ObjectStore
from shared.tasks import cancel_and_wait

pytestmark = pytest.mark.timeout(60)

INTERVAL = 0.25
FENCE_AFTER = 1.5
DOMAIN = "default_vm1"


class Node:
    """One handler's parts on ``store``: the agent, its heartbeat and its fence, running."""

    def __init__(self, store, hypervisor, config):
        self.agent = VmiAgent(store, hypervisor, config, bus=store.bus)
        self.heartbeat = NodeHeartbeat(store, NODE, hypervisor.node_info, interval=INTERVAL,
                                       annotations={FENCE_AFTER_ANNOTATION: str(FENCE_AFTER)})
        self.fence = SelfFence(self.heartbeat, self.agent, fence_after=FENCE_AFTER)
        self.tasks = []

    async def start(self):
        await self.heartbeat.register()
        await self.agent.start()
        self.tasks = [asyncio.create_task(self.heartbeat.run()), asyncio.create_task(self.fence.run())]

    async def stop(self):
        await cancel_and_wait(self.tasks)
        await self.agent.stop()


async def domain_state(hypervisor):
    domain = await hypervisor.get_domain(DOMAIN)
    return None if domain is None else ("active" if domain.is_active else "inactive")


async def _is(coro, value):
    return (await coro) == value


@pytest.fixture
async def cut_off_store(fresh_nats_server):
    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix=f"t{uuid.uuid4().hex[:10]}_")
    yield store
    with contextlib.suppress(OSError):  # the test may leave the server stopped
        await store.close()


async def start_guest(store, hypervisor, node):
    await node.start()
    await store.create(VMIS, make_vmi())
    await wait_until(lambda: _is(domain_state(hypervisor), "active"), timeout=15)
    await wait_until(lambda: _phase(store, "Running"), timeout=15)


async def _phase(store, phase):
    return phase_of(await get_vmi(store, "vm1")) == phase


async def test_a_cut_off_handler_destroys_its_guest_and_reports_it_once_the_store_is_back(
        fresh_nats_server, cut_off_store, hypervisor, agent_config):
    store = cut_off_store
    node = Node(store, hypervisor, agent_config)
    await start_guest(store, hypervisor, node)
    try:
        last_beat = node.heartbeat.last_beat
        fresh_nats_server.stop()
        await wait_until(lambda: _is(domain_state(hypervisor), "inactive"), timeout=FENCE_AFTER + 3)
        fenced_after = time.monotonic() - last_beat
        assert FENCE_AFTER <= fenced_after <= FENCE_AFTER + 1.0, fenced_after
        assert node.agent.fenced and node.fence.destroyed == {"default/vm1": (await get_vmi_uid(hypervisor))}
        # while cut off nothing starts the guest again: several resyncs and checks later it is still down
        await asyncio.sleep(3 * agent_config.resync_interval)
        assert await domain_state(hypervisor) == "inactive"
        fresh_nats_server.start()
        await wait_until(lambda: _phase(store, "Failed"), timeout=20)
        vmi = await get_vmi(store, "vm1")
        assert vmi["status"]["reason"] == "NodeUnresponsive"
        ready = [c for c in vmi["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "False"
        await wait_until(lambda: _is(domain_state(hypervisor), None), timeout=10)  # final: undefined, files gone
        assert not node.agent.fenced and node.fence.fences == 1
        events, _ = await store.list("events", "default")
        fenced = [e for e in events if e["reason"] == "SelfFenced"]
        assert [(e["type"], e["involvedObject"]["name"]) for e in fenced] == [("Warning", "vm1")]
    finally:
        await node.stop()


async def get_vmi_uid(hypervisor):
    return (await hypervisor.get_domain(DOMAIN)).uid


async def test_a_clean_stop_hands_the_fence_over_and_leaves_the_guest_running(cut_off_store, hypervisor,
                                                                              agent_config):
    store = cut_off_store
    node = Node(store, hypervisor, agent_config)
    await start_guest(store, hypervisor, node)
    assert FENCE_AFTER_ANNOTATION in (await store.get("nodes", None, NODE))["metadata"]["annotations"]
    await node.stop()
    await node.fence.retire()
    annotations = (await store.get("nodes", None, NODE))["metadata"]["annotations"]
    assert FENCE_AFTER_ANNOTATION not in annotations
    await asyncio.sleep(FENCE_AFTER + 0.5)  # past the deadline: nobody fences a handed-over node
    assert await domain_state(hypervisor) == "active"


async def test_a_stop_while_cut_off_fences_before_it_ends(fresh_nats_server, cut_off_store, hypervisor,
                                                          agent_config):
    store = cut_off_store
    node = Node(store, hypervisor, agent_config)
    await start_guest(store, hypervisor, node)
    fresh_nats_server.stop()
    await node.stop()
    started = time.monotonic()
    await asyncio.wait_for(node.fence.retire(), FENCE_AFTER + 5)
    assert time.monotonic() - started <= FENCE_AFTER + 2
    assert await domain_state(hypervisor) == "inactive"
