"""``virt-snapshot``: takes VirtualMachineSnapshots and restores VirtualMachineRestores.

Usage: ``virt-snapshot --nats nats://127.0.0.1:4222 --storage-dir <state> --id snap-1``. Several
may run; one leads (Lease ``kubevirt/virt-snapshot`` in the store), the others stand by with warm
caches. ``--storage-dir`` is the installation's state directory: claims live under
``<storage-dir>/pvcs``, volume copies under ``<storage-dir>/volume-snapshots``.
``--health-port`` serves ``GET /healthz`` (200 once the caches are synced), ``GET /leader`` and
``GET /metrics`` (``kubevirt_vmsnapshot_*``, workqueues, store latency). Start-up, signals,
logging and tracing are :mod:`shared.service`'s.
"""

from __future__ import annotations

from pathlib import Path

import click
from aiohttp import web

from services.virt_snapshot.manager import SnapshotManager
from shared.errors import ApiError
from shared.service import (
    ServiceContext,
    ServiceDefinition,
    TracingIdentity,
    leader_election_options,
    service_command,
)


async def run(ctx: ServiceContext) -> None:
    """Run the snapshot controllers until the process is asked to stop."""
    params = ctx.params
    identity = params["identity"]
    storage_dir = params["storage_dir"] or ctx.settings.state_dir
    if storage_dir is None:
        raise click.UsageError("give --storage-dir (or --state-dir): the installation's state directory")
    store = await ctx.connect_store(name=f"virt-snapshot-{identity}")
    manager = SnapshotManager(store, identity, storage_dir=Path(storage_dir), workers=params["workers"],
                              lease_duration=params["lease_duration"], renew_deadline=params["renew_deadline"],
                              retry_period=params["retry_period"])

    async def leader(_: web.Request) -> web.Response:
        return web.json_response({"identity": manager.identity, "leader": manager.is_leader})

    await ctx.serve_health(lambda: (manager.has_synced(), {"synced": manager.has_synced()}),
                           routes=lambda app: app.router.add_get("/leader", leader))
    await ctx.wait_stopped(ctx.start_task(manager.run(), "snapshot-manager"))


SERVICE = ServiceDefinition(
    name="virt-snapshot", summary="Run the snapshot, snapshot-content, restore and provisioner controllers.", run=run,
    options=[
        *leader_election_options(),
        click.option("--storage-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="The installation's state directory (claims under pvcs/, copies under "
                          "volume-snapshots/); default: --state-dir."),
        click.option("--workers", default=2, show_default=True, help="Worker tasks per controller."),
    ],
    state_dir_help="Default for --storage-dir.",
    health_help="Serve /healthz, /leader and /metrics on this port.",
    failures=(ApiError, ValueError, OSError),
    tracing_attributes=lambda settings: TracingIdentity(instance_id=settings.params["identity"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
