"""Fixtures: virt-snapshot's provisioner and restore controllers on a real store with a temporary
state directory (tests/conftest.py's nats-server)."""

from __future__ import annotations

import pytest

from restore_helpers import start, stop


@pytest.fixture
async def snapshot_service(object_store, tmp_path):
    running = await start(object_store, tmp_path / "state")
    yield running
    await stop(running)
