"""The process shape of every leader-elected service (virt-controller, virt-migration,
virt-snapshot): informers synced on every replica, workers only on the holder of the Lease.

A standby keeps its caches warm so that taking over costs no relist; losing the lease cancels the
leader's tasks at once, and the next leader starts from whatever its caches hold (each service
queues every cached object first), so nothing depends on events a replica saw or missed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.informer import Informer
from shared.leader import LeaderElector
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class LeaderElectedProcess:
    """Base of a service manager. A subclass sets ``identity``, ``informers`` and ``elector`` in
    its constructor and implements :meth:`leader_tasks`; :meth:`on_stop` is its hook for what
    must end with the informers (e.g. unregistering a metrics source)."""

    identity: str
    informers: list[Informer[Any]]
    elector: LeaderElector

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the lease."""
        return self.elector.is_leader

    def has_synced(self) -> bool:
        """Whether every informer has listed once."""
        return all(i.has_synced() for i in self.informers)

    def leader_tasks(self) -> list[asyncio.Task[Any]]:
        """Queue what the leader must look at and start its worker tasks (called on each gain of
        the lease)."""
        raise NotImplementedError

    def on_stop(self) -> None:
        """Called before the informers stop (default: nothing)."""

    async def start_informers(self, timeout: float = 30.0) -> None:
        """Start every informer and wait until each has listed once; raises TimeoutError after
        ``timeout`` seconds."""
        for informer in self.informers:
            informer.start()
        await asyncio.gather(*(i.wait_synced(timeout) for i in self.informers))

    async def stop_informers(self) -> None:
        """Run :meth:`on_stop`, then stop every informer."""
        self.on_stop()
        for informer in self.informers:
            await informer.stop()

    async def lead(self) -> None:
        """Run :meth:`leader_tasks` until cancelled (the lease is lost or the process stops);
        the tasks end before this returns."""
        tasks = self.leader_tasks()
        log.info("%s leading: %d tasks", self.identity, len(tasks))
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)

    async def run(self) -> None:
        """Start the informers, then take part in leader election until cancelled."""
        await self.start_informers()
        try:
            await self.elector.run(self.lead)
        finally:
            await self.stop_informers()
