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


async def cancel_and_wait(task: asyncio.Task, timeout: float = 30.0) -> None:
    """Cancel ``task`` and wait up to ``timeout`` seconds for it to finish.

    Raises AssertionError naming every task still pending, with the line each is suspended at,
    when it does not finish in time (a service that ignores cancellation is a bug to see, not a
    silent pytest-timeout)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        return
    stuck = []
    for other in asyncio.all_tasks():
        if other is asyncio.current_task() or other.done():
            continue
        frames = other.get_stack()
        where = f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno}" if frames else "?"
        stuck.append(f"{other.get_name()} at {where}")
    raise AssertionError(f"{task.get_name()} did not finish within {timeout}s of cancel; pending: "
                         + "; ".join(stuck))
