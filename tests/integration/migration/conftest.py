"""Fixtures for virt-migration integration tests: the service's manager in this process on a real
nats-server and store (tests/conftest.py); the tests play scheduler-bridge and the handlers."""

from __future__ import annotations

import pytest

from migration_controller_helpers import start_manager, stop_manager


@pytest.fixture
async def migration(object_store):
    manager, task = await start_manager(object_store, "mig-1")
    yield manager
    await stop_manager(task)
