"""``virt-controller``: the control-plane process (VM, VMI and replica set controllers).

Usage: ``virt-controller --nats nats://127.0.0.1:4222 --id ctl-1``. Several may run; one leads
(Lease ``kubevirt/virt-controller`` in the store), the others stand by with warm caches.
``--health-port`` serves ``GET /healthz`` (200 once the caches are synced), ``GET /leader`` and
``GET /metrics`` (Prometheus text: workqueues, VMI phase counts and transition times, store
latency). Start-up, signals, logging and tracing are :mod:`shared.service`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from services.virt_controller.manager import ControllerManager
from shared import metrics
from shared.errors import ApiError
from shared.node_fencing import DEFAULT_FENCE_MARGIN, DEFAULT_HEARTBEAT_TIMEOUT
from shared.service import (
    ServiceContext,
    ServiceDefinition,
    TracingIdentity,
    leader_election_options,
    service_command,
)


def build_manager(store: Any, params: Mapping[str, Any]) -> ControllerManager:
    """The controller manager this process runs, from its command-line ``params``."""
    return ControllerManager(store, params["identity"], workers=params["workers"],
                             lease_duration=params["lease_duration"], renew_deadline=params["renew_deadline"],
                             retry_period=params["retry_period"], heartbeat_timeout=params["heartbeat_timeout"],
                             fence_margin=params["fence_margin"])


async def run(ctx: ServiceContext) -> None:
    """Run the controllers until the process is asked to stop (or the manager ends)."""
    identity = ctx.params["identity"]
    store = await ctx.connect_store(name=f"virt-controller-{identity}")
    manager = build_manager(store, ctx.params)
    if ctx.settings.health_port is not None:
        metrics.CONTROLLER_LEADING.labels(identity).set_function(lambda: 1.0 if manager.is_leader else 0.0)
        metrics.CONTROLLER_READY.labels(identity).set_function(lambda: 1.0 if manager.has_synced() else 0.0)
    await ctx.run_leader_elected(manager, "controller-manager")


SERVICE = ServiceDefinition(
    name="virt-controller", summary="Run the VirtualMachine, VMI and replica set controllers.", run=run,
    options=[
        *leader_election_options(),
        click.option("--workers", default=4, show_default=True, help="Worker tasks per controller."),
        click.option("--heartbeat-timeout", default=DEFAULT_HEARTBEAT_TIMEOUT, show_default=True, type=float,
                     help="Seconds without a node heartbeat before the VMIs of a self-fencing node become "
                          "Failed (NodeUnresponsive) and are restarted per run strategy; a node that does not "
                          "fence leaves them Unknown."),
        click.option("--fence-margin", default=DEFAULT_FENCE_MARGIN, show_default=True, type=float,
                     help="Seconds a node's advertised --fence-after must stay below --heartbeat-timeout for its "
                          "silence to count as fenced (destroy calls, check periods, clock skew)."),
    ],
    state_dir_help="Accepted for the embedded installation's uniform command line; the controller keeps "
                   "no local state (everything is in the store).",
    health_help="Serve /healthz, /leader and /metrics on this port.",
    failures=(ApiError, ValueError, OSError),
    tracing_attributes=lambda settings: TracingIdentity(instance_id=settings.params["identity"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
