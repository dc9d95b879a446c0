"""Workers: take keys from a WorkQueue and run a reconcile function on each (every controller
service: virt-controller, virt-migration).

The error policy (KubeVirt ``pkg/virt-controller/watch`` ``Execute``): success forgets the key's
backoff; a retryable SyncError, a store Conflict or any unexpected exception requeues the key
with its exponential backoff (or ``retry_after``); a non-retryable SyncError is logged and the
key waits for the next change of its objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.sync_error import SyncError
from shared.errors import Conflict
from shared.workqueue import WorkQueue

Reconcile = Callable[[str], Awaitable[None]]
log = logging.getLogger(__name__)


async def run_worker(queue: WorkQueue, reconcile: Reconcile, *, name: str = "") -> None:
    """Process keys until the queue shuts down (or the task is cancelled)."""
    while True:
        key = await queue.get()
        if key is None:
            return
        try:
            await reconcile(key)
        except asyncio.CancelledError:
            raise
        except SyncError as err:
            if not err.retryable:
                log.warning("%s %s: %s (%s), not retried", name, key, err.message, err.reason)
                queue.forget(key)
            elif err.retry_after is not None:
                queue.add_after(key, err.retry_after)
            else:
                queue.add_rate_limited(key)
                log.info("%s %s: %s (%s), requeued", name, key, err.message, err.reason)
        except Conflict:
            queue.add_rate_limited(key)
        except Exception:  # a bug or a lost dependency: keep the controller alive, retry later
            log.exception("%s %s: reconcile failed", name, key)
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        finally:
            queue.done(key)


def start_workers(queue: WorkQueue, reconcile: Reconcile, count: int, *,
                  name: str = "") -> list[asyncio.Task[None]]:
    """Start ``count`` worker tasks on the running loop."""
    return [asyncio.create_task(run_worker(queue, reconcile, name=name), name=f"{name}-worker-{i}")
            for i in range(count)]
