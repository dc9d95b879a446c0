"""``virt-migration``: drives VirtualMachineInstanceMigrations and node evacuations.

Usage: ``virt-migration --nats nats://127.0.0.1:4222 --id mig-1``. Several may run; one leads
(Lease ``kubevirt/virt-migration`` in the store), the others stand by with warm caches.
``--health-port`` serves ``GET /healthz`` (200 once the caches are synced), ``GET /leader`` and
``GET /metrics`` (the ``kubevirt_vmi_migration*`` metrics, workqueues, store latency).
``--scheduling-timeout`` is how long a VMIM may wait for scheduler-bridge to find a target before
it fails (KubeVirt: 5 minutes for an unschedulable target pod); ``--target-ready-timeout`` how
long from PreparingTarget until the source has started (the target could not prepare). Start-up, signals, logging and
tracing are :mod:`shared.service`'s.
"""

from __future__ import annotations


import click

from services.virt_migration.controller import DEFAULT_SCHEDULING_TIMEOUT, DEFAULT_TARGET_READY_TIMEOUT
from services.virt_migration.manager import MigrationManager
from shared.errors import ApiError
from shared.service import (
    ServiceContext,
    ServiceDefinition,
    TracingIdentity,
    leader_election_options,
    service_command,
)


async def run(ctx: ServiceContext) -> None:
    """Run the migration controllers until the process is asked to stop."""
    params = ctx.params
    identity = params["identity"]
    store = await ctx.connect_store(name=f"virt-migration-{identity}")
    manager = MigrationManager(store, identity, workers=params["workers"], lease_duration=params["lease_duration"],
                               renew_deadline=params["renew_deadline"], retry_period=params["retry_period"],
                               scheduling_timeout=params["scheduling_timeout"],
                               target_ready_timeout=params["target_ready_timeout"])
    await ctx.run_leader_elected(manager, "migration-manager")


SERVICE = ServiceDefinition(
    name="virt-migration", summary="Run the live-migration and node-evacuation controllers.", run=run,
    options=[
        *leader_election_options(),
        click.option("--workers", default=4, show_default=True, help="Worker tasks for migrations."),
        click.option("--scheduling-timeout", default=DEFAULT_SCHEDULING_TIMEOUT, show_default=True,
                     help="Seconds a migration may wait for a target node before it fails."),
        click.option("--target-ready-timeout", default=DEFAULT_TARGET_READY_TIMEOUT, show_default=True,
                     help="Seconds from PreparingTarget until the source node must have started the transfer "
                          "before the migration fails (the target node could not prepare)."),
    ],
    state_dir_help="Accepted for the embedded installation's uniform command line; virt-migration keeps "
                   "no local state (everything is in the store).",
    health_help="Serve /healthz, /leader and /metrics on this port.",
    failures=(ApiError, ValueError, OSError),
    tracing_attributes=lambda settings: TracingIdentity(instance_id=settings.params["identity"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
