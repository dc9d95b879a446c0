"""``scheduler-bridge``: the process placing VMIs on nodes (embedded installation).

Usage: ``scheduler-bridge --nats nats://127.0.0.1:4222 --id bridge-1``. Start-up, signals, health
endpoint, logging and tracing are :mod:`shared.service`'s; this module declares the bridge's own
options and what it builds (:func:`build_bridge`). Several may run: one leads (Lease
``kubevirt/scheduler-bridge``, :mod:`services.scheduler_bridge.manager`) and places, the others
keep warm caches; ``--health-port`` also serves ``GET /leader``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import click

from services.scheduler_bridge.manager import BridgeManager
from services.scheduler_bridge.service import SchedulerBridge
from shared.service import (
    ServiceContext,
    ServiceDefinition,
    TracingIdentity,
    leader_election_options,
    service_command,
)

log = logging.getLogger("kubevirt.scheduler_bridge")


def build_bridge(store: Any, params: Mapping[str, Any]) -> SchedulerBridge:
    """The bridge this process runs, from its command-line ``params``."""
    return SchedulerBridge(store, heartbeat_timeout=timedelta(seconds=params["heartbeat_timeout"]))


async def run(ctx: ServiceContext) -> None:
    """Take part in the election and place VMIs while leading, until asked to stop."""
    params = ctx.params
    identity = params["identity"]
    store = await ctx.connect_store(name=f"scheduler-bridge-{identity}")
    bridge = build_bridge(store, params)
    ctx.on_exit(bridge.stop)  # in-flight placement writes end with the process
    manager = BridgeManager(store, bridge, identity, lease_duration=params["lease_duration"],
                            renew_deadline=params["renew_deadline"], retry_period=params["retry_period"])
    log.info("scheduler-bridge %s started (NATS %s)", identity, ",".join(ctx.settings.nats_servers))
    await ctx.run_leader_elected(manager, "bridge-manager")


SERVICE = ServiceDefinition(
    name="scheduler-bridge", summary="Place VMIs in phase Scheduling on registered nodes.", run=run,
    options=[*leader_election_options(),
             click.option("--heartbeat-timeout", default=40.0, show_default=True,
                          help="Seconds without a node heartbeat before the node is skipped.")],
    state_dir_help="Accepted for a uniform command line; the bridge keeps no local state.",
    health_help="Serve /healthz, /leader and /metrics on this port.",
    tracing_attributes=lambda settings: TracingIdentity(instance_id=settings.params["identity"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
