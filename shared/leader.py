"""Leader election through a ``coordination.k8s.io/v1`` Lease object in the store.

Same rules as client-go's ``leaderelection`` (``k8s.io/client-go/tools/leaderelection``):

* one Lease per leader-elected service (``leases`` bucket: ``kubevirt/virt-controller``,
  ``kubevirt/virt-migration``, virt-api's ``kubevirt/virt-api-store-maintenance``) with ``spec.holderIdentity``,
  ``leaseDurationSeconds``, ``acquireTime``, ``renewTime``, ``leaseTransitions``;
* candidates try every ``retry_period``; the holder renews by a compare-and-swap update on the
  Lease's resourceVersion, so two candidates can never both win the same revision;
* a candidate takes over only when the record has not changed for ``lease_duration`` seconds
  *as measured on its own monotonic clock* since it last saw it change (no trust in other
  hosts' clocks);
* the holder gives up (stops leading) when it could not renew for ``renew_deadline`` seconds,
  which is shorter than ``lease_duration``, so the old leader stops before a new one starts;
* on a clean stop the holder releases the lease (empty holder) for an instant hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from shared.clock import Clock, SystemClock
from shared.api.vocabulary import format_micro_time
from shared.errors import AlreadyExists, ApiError, Conflict, NotFound
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LEASES = "leases"


class LeaderElector:
    """One candidate in the election.

    Args:
        store: ObjectStore (get/create/update of ``leases``).
        identity: this process' unique id (``holderIdentity``).
        name, namespace: the Lease object.
        lease_duration: seconds a lease is valid without renewal (client-go default 15).
        renew_deadline: seconds the leader keeps trying to renew before giving up (default 10).
        retry_period: seconds between attempts (default 2).
        monotonic: clock for expiry decisions (seconds); wall ``clock`` only for the timestamps
            written into the Lease.
    """

    def __init__(self, store: Any, identity: str, *, name: str = "virt-controller",
                 namespace: str = "kubevirt", lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Clock | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.store = store
        self.identity = identity
        self.name = name
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock or SystemClock()
        self.monotonic = monotonic
        self.is_leader = False
        self.transitions_seen = 0
        self._observed_rv: str | None = None
        self._observed_at = 0.0

    # -- one attempt -------------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One attempt to become or stay leader; True if this process holds the lease now."""
        now_text = format_micro_time(self.clock.now())
        try:
            lease = await self.store.get(LEASES, self.namespace, self.name)
        except NotFound:
            fresh = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(round(self.lease_duration)),
                    "acquireTime": now_text,
                    "renewTime": now_text,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self.store.create(LEASES, fresh)
            except AlreadyExists:
                return False
            self._observe(created)
            return True
        spec = dict(lease.get("spec") or {})
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if rv != self._observed_rv:
            self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > self.monotonic():
            return False
        if holder != self.identity:
            spec["acquireTime"] = now_text
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(round(self.lease_duration))
        spec["renewTime"] = now_text
        updated = dict(lease)
        updated["spec"] = spec
        try:
            stored = await self.store.update(LEASES, updated, has_status_subresource=False)
        except (Conflict, NotFound):
            return False
        self._observe(stored)
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")
        self._observed_at = self.monotonic()

    async def release(self) -> None:
        """Give the lease up if this process holds it (empty holder, so others take over now).

        Best effort, bounded by ``retry_period`` seconds (client-go's ReleaseOnCancel is best effort
        too): with the store unreachable a stopping process must still stop promptly; the lease
        then simply expires after its duration."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            async with asyncio.timeout(self.retry_period):
                lease = await self.store.get(LEASES, self.namespace, self.name)
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != self.identity:
                    return
                spec["holderIdentity"] = ""
                spec["leaseDurationSeconds"] = 1
                spec["renewTime"] = format_micro_time(self.clock.now())
                await self.store.update(LEASES, {**lease, "spec": spec}, has_status_subresource=False)
        except (ApiError, TimeoutError, OSError) as err:
            log.info("lease release failed: %s", str(err) or type(err).__name__)

    # -- loops -------------------------------------------------------------------------------
    async def _attempt(self) -> bool:
        try:
            async with asyncio.timeout(self.retry_period):  # not wait_for: it can lose a cancel (gh-86296)
                return await self.try_acquire_or_renew()
        except (TimeoutError, ApiError, OSError) as err:
            log.info("leader election attempt failed: %s", err)
            return False

    async def acquire(self) -> None:
        """Return once this process is the leader."""
        while not await self._attempt():
            await asyncio.sleep(self.retry_period)
        self.is_leader = True
        log.info("%s became the leader of %s/%s", self.identity, self.namespace, self.name)

    async def hold(self) -> None:
        """Renew every ``retry_period``; return when no renewal succeeded for ``renew_deadline``."""
        last_ok = self.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            if await self._attempt():
                last_ok = self.monotonic()
            elif self.monotonic() - last_ok >= self.renew_deadline:
                self.is_leader = False
                log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                return

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait for the lease, run ``lead()`` while holding it, cancel it when lost.

        ``lead`` is started as a task each time leadership is gained. Cancelling ``run``
        cancels ``lead`` and releases the lease.
        """
        try:
            while True:
                await self.acquire()
                leading = asyncio.create_task(lead(), name="leading")
                holding = asyncio.create_task(self.hold(), name="lease-renewal")
                try:
                    done, _ = await asyncio.wait({leading, holding}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    # again until they end: one cancel can be lost in nats-py's wait_for (shared.tasks)
                    await cancel_and_wait((leading, holding))
                if leading in done and not leading.cancelled() and leading.exception() is not None:
                    log.error("leading task failed: %r", leading.exception())
                if self.is_leader:  # lead() returned by itself: hand the lease over
                    await self.release()
        finally:
            await asyncio.shield(self.release())
