"""Fixtures for metrics and events tests: the whole control loop in this process (virt-controller,
scheduler-bridge, one virt-handler node on libvirt's test driver) on the real nats-server of
tests/conftest.py, plus virt-api's application served over plain HTTP on a free loopback port
(no token: the tests reach it with kubectl and aiohttp only from this host)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))  # loop_helpers: InProcessNode

from loop_helpers import InProcessNode  # noqa: E402
from services.scheduler_bridge.service import SchedulerBridge  # noqa: E402
from services.virt_api.app import create_app  # noqa: E402
from services.virt_controller.manager import ControllerManager  # noqa: E402
from shared.natsserver import pick_free_port  # noqa: E402

NODE = "node-metrics"  # a node name no other test uses: phase counts are per node


@pytest.fixture
async def controller(object_store):
    manager = ControllerManager(object_store, "metrics-ctl", lease_duration=3.0, renew_deadline=2.0,
                                retry_period=0.5)
    task = asyncio.get_running_loop().create_task(manager.run())
    yield manager
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def bridge(object_store):
    running = SchedulerBridge(object_store, retry_interval=1.0)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def node(object_store, tmp_path):
    running = await InProcessNode(object_store, NODE, tmp_path).start()
    yield running
    await running.close()


@pytest.fixture
async def api_url(object_store):
    """virt-api's app over HTTP on a free port; yields its base URL."""
    runner = web.AppRunner(create_app(object_store, token=None))
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
