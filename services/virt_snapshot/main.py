"""``virt-snapshot``: takes VirtualMachineSnapshots and restores VirtualMachineRestores.

Usage: ``virt-snapshot --nats nats://127.0.0.1:4222 --storage-dir <state> --id snap-1``. Several
may run; one leads (Lease ``kubevirt/virt-snapshot`` in the store), the others stand by with warm
caches. ``--storage-dir`` is the installation's state directory: claims live under
``<storage-dir>/pvcs``, volume copies under ``<storage-dir>/volume-snapshots``.
``--health-port`` serves ``GET /healthz`` (200 once the caches are synced), ``GET /leader`` and
``GET /metrics`` (``kubevirt_vmsnapshot_*``, workqueues, store latency). Start-up, signals,
logging and tracing are :mod:`shared.service`'s.

``--volume-snapshotter`` picks the VolumeSnapshotter: ``embedded`` (default: qcow2 copies under
``<storage-dir>/volume-snapshots``; restored claims in the store, bound by the local provisioner)
or ``csi`` (``snapshot.storage.k8s.io`` VolumeSnapshots on a Kubernetes cluster, and restored
claims created there for its CSI driver; reached through ``--kubeconfig`` or, inside a pod,
``--in-cluster``; without either, ``$KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

from pathlib import Path

import click

from services.virt_snapshot.manager import SnapshotManager
from services.virt_snapshot.volume_snapshotter import VolumeSnapshotter
from shared.errors import ApiError
from shared.kube_client import apply_api_client, kubernetes_client_options
from shared.service import (
    ServiceContext,
    ServiceDefinition,
    TracingIdentity,
    leader_election_options,
    service_command,
)


def volume_snapshotter(ctx: ServiceContext) -> VolumeSnapshotter | None:
    """The ``--volume-snapshotter`` choice: None for ``embedded`` (the manager builds it), a
    :class:`~services.virt_snapshot.csi_snapshotter.CsiSnapshotter` for ``csi`` (closed at exit).
    Raises click.UsageError for Kubernetes options without ``csi`` or a configuration that does not load."""
    params = ctx.params
    if params["volume_snapshotter"] != "csi":
        if params["kubeconfig"] is not None or params["in_cluster"]:
            raise click.UsageError("--kubeconfig and --in-cluster go with --volume-snapshotter csi")
        return None
    try:  # the kubernetes client is needed only here
        from services.virt_snapshot.csi_snapshotter import CsiSnapshotter
    except ImportError as err:
        raise click.UsageError(f"--volume-snapshotter csi needs the kubernetes package: {err}") from None
    snapshotter = CsiSnapshotter(apply_api_client(params["kubeconfig"], params["in_cluster"],
                                                  needed_for="--volume-snapshotter csi"))

    async def close() -> None:
        snapshotter.close()
    ctx.on_exit(close)
    return snapshotter


async def run(ctx: ServiceContext) -> None:
    """Run the snapshot controllers until the process is asked to stop."""
    params = ctx.params
    identity = params["identity"]
    storage_dir = params["storage_dir"] or ctx.settings.state_dir
    if storage_dir is None:
        raise click.UsageError("give --storage-dir (or --state-dir): the installation's state directory")
    snapshotter = volume_snapshotter(ctx)
    store = await ctx.connect_store(name=f"virt-snapshot-{identity}")
    manager = SnapshotManager(store, identity, storage_dir=Path(storage_dir), workers=params["workers"],
                              snapshotter=snapshotter,
                              lease_duration=params["lease_duration"], renew_deadline=params["renew_deadline"],
                              retry_period=params["retry_period"])
    await ctx.run_leader_elected(manager, "snapshot-manager")


SERVICE = ServiceDefinition(
    name="virt-snapshot", summary="Run the snapshot, snapshot-content, restore and provisioner controllers.", run=run,
    options=[
        *leader_election_options(),
        click.option("--storage-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="The installation's state directory (claims under pvcs/, copies under "
                          "volume-snapshots/); default: --state-dir."),
        click.option("--workers", default=2, show_default=True, help="Worker tasks per controller."),
        click.option("--volume-snapshotter", type=click.Choice(["embedded", "csi"]), default="embedded",
                     show_default=True, help="embedded: qcow2 copies in the state directory; csi: "
                     "snapshot.storage.k8s.io VolumeSnapshots on a Kubernetes cluster."),
        *kubernetes_client_options("With --volume-snapshotter csi"),
    ],
    state_dir_help="Default for --storage-dir.",
    health_help="Serve /healthz, /leader and /metrics on this port.",
    failures=(ApiError, ValueError, OSError),
    tracing_attributes=lambda settings: TracingIdentity(instance_id=settings.params["identity"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
