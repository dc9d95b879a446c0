"""Fixtures for whole-loop tests: virt-controller, scheduler-bridge and a virt-handler node, all
in this process on one real nats-server (tests/conftest.py) and libvirt's test driver."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from loop_helpers import InProcessNode
from services.scheduler_bridge.service import SchedulerBridge
from services.virt_controller.manager import ControllerManager


@pytest.fixture
async def controller(object_store):
    manager = ControllerManager(object_store, "loop-ctl", lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
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
    running = await InProcessNode(object_store, "node-small", tmp_path).start()
    yield running
    await running.close()
