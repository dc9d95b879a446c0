"""scheduler-bridge as a leader-elected process: every replica keeps its caches warm, only the
holder of the Lease ``kubevirt/scheduler-bridge`` places.

Placement is a CAS per VMI, so two placing bridges never place one VMI twice, but the resource
accounting (what each node holds, what is being written) lives in one bridge's memory: a second
bridge placing at the same time could overbook a node. Hence one leader, as KubeVirt's
virt-controller runs one leader among its replicas (client-go ``leaderelection``); a standby takes
over within the lease duration with its caches already synced.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.scheduler_bridge.service import SchedulerBridge
from shared.leader import LeaderElector
from shared.leader_process import LeaderElectedProcess

LEASE_NAME = "scheduler-bridge"
"""The Lease ``kubevirt/scheduler-bridge`` the replicas elect a leader with."""


class BridgeManager(LeaderElectedProcess):
    """One replica of scheduler-bridge: ``bridge``'s informers always, its placement loop only
    while leading. Lease timings in seconds (client-go's meaning)."""

    def __init__(self, store: Any, bridge: SchedulerBridge, identity: str, *, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
        self.bridge = bridge
        self.identity = identity
        self.informers = bridge.informers
        self.elector = LeaderElector(store, identity, name=LEASE_NAME, lease_duration=lease_duration,
                                     renew_deadline=renew_deadline, retry_period=retry_period)

    async def start_informers(self, timeout: float = 30.0) -> None:
        """Start and sync the bridge's informers; the bridge counts as synced after that."""
        await super().start_informers(timeout)
        self.bridge.synced.set()

    def leader_tasks(self) -> list[asyncio.Task[Any]]:
        """The bridge's placement loop and ticker (cancelled when the lease is lost)."""
        return list(self.bridge.start_placing())
