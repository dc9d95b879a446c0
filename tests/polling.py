"""Polling for integration tests: wait for a condition on live services instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio


async def wait_until(check, timeout=10.0, interval=0.02):
    """Poll the async or plain callable ``check`` until it returns a truthy value; return it.

    Raises AssertionError after ``timeout`` seconds; ``interval`` is the pause between checks (s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
