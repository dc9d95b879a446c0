"""B1's wait for Running (bench/control_plane_bench.py): a driver watch that fails is reported as
such at once, not after the stall timeout as a cluster that stopped making progress."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.control_plane_bench import wait_progress  # noqa: E402


async def test_a_failed_driver_watch_ends_the_wait_with_its_error():
    async def broken_watch() -> None:
        raise ConnectionError("watch of virtualmachineinstances ended")

    watcher = asyncio.create_task(broken_watch())
    with pytest.raises(RuntimeError, match=r"watch ended at 2 of 5 VMIs Running: ConnectionError\('watch of"):
        async with asyncio.timeout(5):
            await wait_progress(asyncio.Event(), {"a", "b"}, 5, stall_timeout=60.0, watcher=watcher)


async def test_the_wait_ends_when_every_vmi_runs():
    done = asyncio.Event()
    done.set()
    await wait_progress(done, {"a"}, 1, stall_timeout=60.0, watcher=None)
