"""Fixtures for tracing tests: tracing on with an in-memory exporter (and the JetStream trace
store of the test's buckets), virt-api served in this process, and the control loop of
tests/integration/loop (virt-controller, scheduler-bridge, a virt-handler on libvirt's test
driver), all on the session's real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))

from loop_helpers import InProcessNode  # noqa: E402

from services.scheduler_bridge.service import SchedulerBridge  # noqa: E402
from services.virt_api.app import create_app  # noqa: E402
from services.virt_controller.manager import ControllerManager  # noqa: E402
from shared import trace_store, tracing  # noqa: E402


@pytest.fixture
async def traced(object_store):
    """Tracing on for this test: ``(in-memory exporter, JetStream exporter)``; off afterwards."""
    memory = tracing.use_in_memory_exporter()
    jetstream = await trace_store.attach_trace_store(object_store.bus, object_store.prefix,
                                                     max_bytes=8 * 2**20, max_age_seconds=600)
    try:
        yield memory, jetstream
    finally:
        await asyncio.to_thread(tracing.force_flush)
        await jetstream.drain()
        tracing.reset()
        await object_store.bus.jetstream().delete_stream(trace_store.compute_stream_name(object_store.prefix))


@pytest.fixture
async def api(object_store, traced):
    """An aiohttp session on virt-api (no authentication) served from this process."""
    server = TestServer(create_app(object_store, token=None))
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
        yield session
    await server.close()


@pytest.fixture
async def controller(object_store, traced):
    manager = ControllerManager(object_store, "trace-ctl", lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
    task = asyncio.get_running_loop().create_task(manager.run())
    yield manager
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def bridge(object_store, traced):
    running = SchedulerBridge(object_store, retry_interval=1.0)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def node(object_store, tmp_path, traced):
    running = await InProcessNode(object_store, "node-small", tmp_path).start()
    yield running
    await running.close()
