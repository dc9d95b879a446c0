"""A rate-limited work queue of object keys (asyncio), after client-go's ``workqueue``.

Semantics (``k8s.io/client-go/util/workqueue``):

* a key is queued at most once (``add`` of a queued key is a no-op);
* a key is never handed to two workers at once: adding a key that is being processed marks it
  dirty and it is queued again when the worker calls ``done``;
* ``add_after`` delays an add (the earliest pending time wins);
* ``add_rate_limited`` delays by a per-key exponential backoff, ``forget`` resets it;
* ``shutdown`` stops it: pending delayed adds are dropped and ``get`` answers None.

The backoff rule is the pure :func:`compute_item_delay` (client-go's
``ItemExponentialFailureRateLimiter``, which KubeVirt's controllers use with a 5 ms base). The
``kubevirt_workqueue_*`` metrics (depth, adds, retries, queue and work durations) are labelled
with the queue's ``name``. One queue serves every service: virt-controller's controllers,
scheduler-bridge and virt-handler (``base_delay``/``max_delay`` set its retry backoff).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from shared import metrics

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 300.0


def compute_item_delay(failures: int, base: float = DEFAULT_BASE_DELAY,
                       cap: float = DEFAULT_MAX_DELAY) -> float:
    """Seconds before retry number ``failures + 1`` of one key: ``base * 2**failures``, capped.

    client-go's ``ItemExponentialFailureRateLimiter`` (5 ms base). ``failures`` < 0 counts as 0.
    """
    exponent = max(failures, 0)
    if exponent > 62:
        return cap
    return min(base * float(2 ** exponent), cap)


class WorkQueue:
    """Keys waiting for a reconcile. Use from one event loop.

    Args:
        base_delay, max_delay: per-key exponential backoff (seconds) for ``add_rate_limited``.
        name: for logs and metrics.
    """

    def __init__(self, *, base_delay: float = DEFAULT_BASE_DELAY,
                 max_delay: float = DEFAULT_MAX_DELAY, name: str = "") -> None:
        self.name = name
        self._base = base_delay
        self._cap = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutdown = False
        # kubevirt_workqueue_* children of this queue; times are perf_counter seconds
        self._m_depth = metrics.WORKQUEUE_DEPTH.labels(name)
        self._m_adds = metrics.WORKQUEUE_ADDS.labels(name)
        self._m_retries = metrics.WORKQUEUE_RETRIES.labels(name)
        self._m_queued = metrics.WORKQUEUE_QUEUE_DURATION.labels(name)
        self._m_work = metrics.WORKQUEUE_WORK_DURATION.labels(name)
        self._added_at: dict[str, float] = {}
        self._started_at: dict[str, float] = {}

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those being processed or delayed)."""
        return len(self._queue)

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._shutdown

    def num_delayed(self) -> int:
        """Keys waiting for an ``add_after`` / ``add_rate_limited`` timer."""
        return len(self._timers)

    def add(self, key: str) -> None:
        """Queue ``key`` now (no-op if already queued or shut down)."""
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        self._m_adds.inc()
        self._added_at.setdefault(key, time.perf_counter())
        if key in self._processing:
            return
        self._queue.append(key)
        self._m_depth.set(len(self._queue))
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending add_after wins."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        handle = loop.call_later(delay, self._fire, key)
        self._timers[key] = (ready_at, handle)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after its backoff; returns the delay used (seconds)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self._m_retries.inc()
        delay = compute_item_delay(failures, self._base, self._cap)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (after a successful reconcile)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        """How many rate-limited adds ``key`` had since the last ``forget``."""
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        """The next key to process (waits); None once the queue is shut down and empty."""
        while not self._queue:
            if self._shutdown:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        now = time.perf_counter()
        self._m_depth.set(len(self._queue))
        self._m_queued.observe(now - self._added_at.pop(key, now))
        self._started_at[key] = now
        return key

    def done(self, key: str) -> None:
        """Mark ``key`` processed; re-queues it if it was added meanwhile."""
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._m_work.observe(time.perf_counter() - started)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._m_depth.set(len(self._queue))
            self._wake_one()

    def shutdown(self) -> None:
        """Stop accepting keys; waiting ``get`` calls return None."""
        self._shutdown = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
