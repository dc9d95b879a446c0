"""Fixtures for handler tests: a real nats-server store (tests/conftest.py), a private libvirt
test-driver host per test, and a running VmiAgent on it."""

from __future__ import annotations

import pytest

from services.virt_handler.agent import AgentConfig, VmiAgent
from services.virt_handler.hypervisor import Hypervisor
from services.virt_handler.simulated_node import apply_test_node_file

from handler_helpers import GI, NODE


@pytest.fixture
async def hypervisor(tmp_path):
    hv = Hypervisor(apply_test_node_file(tmp_path / "host.xml", cpus=8, memory_bytes=16 * GI))
    await hv.open()
    yield hv
    await hv.close()


@pytest.fixture
def agent_config(tmp_path):
    return AgentConfig(node_name=NODE, state_dir=tmp_path / "state", domain_type="test",
                       resync_interval=1.0, shutdown_poll_interval=0.1, base_retry_delay=0.1, max_retry_delay=0.5)


@pytest.fixture
async def agent(object_store, hypervisor, agent_config):
    running = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await running.start()
    yield running
    await running.stop()
