"""Stopping asyncio tasks for certain on Python 3.11.

A cancellation that meets an ``asyncio.wait_for`` timeout or result at the same moment can be
lost (CPython gh-86296; nats-py uses ``wait_for`` inside its requests), so one ``cancel()`` may
leave a watch or request loop running and a service's ``stop()`` waiting for ever.
:func:`cancel_and_wait` cancels again until the tasks have ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, rounds: int = 5, wait: float = 2.0) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling the ones still running again
    every ``wait`` seconds, at most ``rounds`` times; tasks still running then are logged (never
    raises for them). A cancellation of the caller itself propagates."""
    pending = [t for t in tasks if not t.done()]
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=wait)
        pending = list(still)
    for task in pending:
        log.warning("task %s did not stop after %d cancellations", task.get_name(), rounds)
