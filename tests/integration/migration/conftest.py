"""Fixtures for virt-migration integration tests: the service's manager in this process on a real
nats-server and store (tests/conftest.py); the tests play scheduler-bridge and the handlers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.virt_migration.manager import MigrationManager


async def start_manager(store, identity: str, **kwargs) -> tuple[MigrationManager, asyncio.Task]:
    manager = MigrationManager(store, identity, lease_duration=3.0, renew_deadline=2.0, retry_period=0.3, **kwargs)
    return manager, asyncio.get_running_loop().create_task(manager.run())


async def stop_manager(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def migration(object_store):
    manager, task = await start_manager(object_store, "mig-1")
    yield manager
    await stop_manager(task)
