"""``scheduler-bridge``: the process placing VMIs on nodes (embedded installation).

Usage: ``scheduler-bridge --nats nats://127.0.0.1:4222``. Start-up, signals, health endpoint,
logging and tracing are :mod:`shared.service`'s; this module declares the bridge's own options and
what it builds (:func:`build_bridge`). Run one per installation: placement is crash-safe (CAS)
but resource accounting assumes a single bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import click

from services.scheduler_bridge.service import SchedulerBridge
from shared.service import ServiceContext, ServiceDefinition, service_command

log = logging.getLogger("kubevirt.scheduler_bridge")


def build_bridge(store: Any, params: Mapping[str, Any]) -> SchedulerBridge:
    """The bridge this process runs, from its command-line ``params``."""
    return SchedulerBridge(store, heartbeat_timeout=timedelta(seconds=params["heartbeat_timeout"]))


async def run(ctx: ServiceContext) -> None:
    """Place VMIs until the process is asked to stop."""
    store = await ctx.connect_store(name="scheduler-bridge")
    bridge = build_bridge(store, ctx.params)
    ctx.on_exit(bridge.stop)
    await bridge.start()
    await ctx.serve_health(lambda: (bridge.synced.is_set(), {
        "synced": bridge.synced.is_set(), "placements": bridge.placements, "writes": bridge.writes,
        "waiting": len(bridge.pending()), "migrationTargets": bridge.migrations.targets_written,
        "migrationsAwaitingTarget": len(bridge.migrations.awaiting())}))
    log.info("scheduler-bridge placing VMIs (NATS %s)", ",".join(ctx.settings.nats_servers))
    await ctx.wait_stopped()


SERVICE = ServiceDefinition(
    name="scheduler-bridge", summary="Place VMIs in phase Scheduling on registered nodes.", run=run,
    options=[click.option("--heartbeat-timeout", default=40.0, show_default=True,
                          help="Seconds without a node heartbeat before the node is skipped.")],
    state_dir_help="Accepted for a uniform command line; the bridge keeps no local state.")

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
