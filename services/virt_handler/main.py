"""``virt-handler``: the per-node process (Node heartbeat + VMI sync loop on one libvirt).

Usage::

    virt-handler --nats nats://127.0.0.1:4222 --node-name node1 \\
                 --libvirt-uri qemu:///system --state-dir /var/lib/kubevirt-py/node1

Start-up, signals, health endpoint, logging and tracing are :mod:`shared.service`'s. This module
opens libvirt and the store (one readable line and exit code 1 when either is unreachable),
decides the domain type (:mod:`services.virt_handler.domain_type`), and runs what
:func:`build_node` builds (Node heartbeat, the VMI agent, the serial-console server, the
self-fence) until SIGTERM/SIGINT. Stopping leaves every domain running: the next handler adopts
them (the stop first hands the fence over, :meth:`SelfFence.retire`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from services.virt_handler.agent import AgentConfig, VmiAgent, describe
from services.virt_handler.console import ConsoleServer
from services.virt_handler.domain import DEFAULT_PVC_ROOT
from services.virt_handler.domain_stats import DomainStatsSnapshot
from services.virt_handler.domain_type import ACCELERATION_RECORD, decide_domain_type
from services.virt_handler.fencing import SelfFence
from services.virt_handler.hypervisor import Hypervisor, HypervisorError
from services.virt_handler.node import NodeHeartbeat, default_node_name
from shared.api.migration_vocabulary import NODE_MIGRATION_URI_ANNOTATION, NODE_VMI_STATE_DIR_ANNOTATION
from shared.errors import ApiError
from shared.node_fencing import (
    DEFAULT_FENCE_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL,
    FENCE_AFTER_ANNOTATION,
    compute_timing_problem,
    format_fence_after,
)
from shared.service import CommonSettings, ServiceContext, ServiceDefinition, TracingIdentity, service_command
from shared.tasks import cancel_and_wait

__all__ = ["ACCELERATION_RECORD", "DomainStatsSnapshot", "HandlerSettings", "build_node", "decide_domain_type",
           "main"]

log = logging.getLogger("kubevirt.virt_handler")


@dataclass(frozen=True)
class HandlerSettings:
    """Everything virt-handler is configured with (seconds for intervals).

    ``domain_type`` ``auto`` decides from the URI and the KVM probe; ``image_dir`` is the local
    OCI image store for containerDisk/kernelBoot images (default ``<state_dir>/images``);
    ``migration_uri``: how other nodes' libvirtd reach this node's (None: computed,
    :func:`compute_migration_uri`); ``migration_address``: the address migration data to this
    node goes to (the VMI's ``migrationState.targetNodeAddress``; KubeVirt: the handler pod's IP);
    ``stand_in_migration_seconds``: the fixed duration of a
    stand-in migration on the test driver; ``pvc_root``: where a claim's
    ``<namespace>/<claim>/disk.img`` lives (the local provisioner's directory).
    """

    nats_servers: tuple[str, ...]
    node_name: str
    libvirt_uri: str
    state_dir: Path
    image_dir: Path | None = None
    bucket_prefix: str = "kv_"
    domain_type: str = "auto"
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    fence_after: float = DEFAULT_FENCE_AFTER
    workers: int = 8
    connect_timeout: float = 30.0
    health_port: int | None = None
    stats_interval: float = 10.0
    migration_uri: str | None = None
    migration_address: str = "127.0.0.1"
    stand_in_migration_seconds: float = 1.0
    pvc_root: Path = DEFAULT_PVC_ROOT


def compute_handler_settings(common: CommonSettings) -> HandlerSettings:
    """The handler's settings from its command line."""
    p = common.params
    assert common.state_dir is not None  # a required option
    return HandlerSettings(nats_servers=common.nats_servers, node_name=p["node_name"], libvirt_uri=p["libvirt_uri"],
                           state_dir=common.state_dir, image_dir=p["image_dir"], bucket_prefix=common.bucket_prefix,
                           domain_type=p["domain_type"], heartbeat_interval=p["heartbeat_interval"],
                           fence_after=p.get("fence_after", DEFAULT_FENCE_AFTER),
                           workers=p["workers"], health_port=common.health_port,
                           migration_uri=p.get("migration_uri"),
                           migration_address=p.get("migration_address") or "127.0.0.1",
                           stand_in_migration_seconds=p.get("stand_in_migration_seconds", 1.0),
                           pvc_root=p.get("pvc_root") or DEFAULT_PVC_ROOT)


def compute_migration_uri(settings: HandlerSettings) -> str:
    """The Node annotation ``kubevirt-py.io/libvirt-migration-uri``: ``--migration-uri``, else
    derived from ``--libvirt-uri`` (``shared.libvirtd.compute_migration_uri``)."""
    from shared import libvirtd

    if settings.migration_uri:
        return settings.migration_uri
    return libvirtd.compute_migration_uri(settings.libvirt_uri, libvirtd.find_system_libvirtd())


def compute_node_annotations(settings: HandlerSettings) -> dict[str, str]:
    """The annotations the handler keeps on its Node: for migrations (URI and VMI state dir) and,
    when it fences itself, its ``fence_after`` (``shared.node_fencing.FENCE_AFTER_ANNOTATION``)."""
    annotations = {NODE_MIGRATION_URI_ANNOTATION: compute_migration_uri(settings),
                   NODE_VMI_STATE_DIR_ANNOTATION: str(settings.state_dir / "vmis")}
    if settings.fence_after > 0:
        annotations[FENCE_AFTER_ANNOTATION] = format_fence_after(settings.fence_after)
    return annotations


def build_node(store: Any, hypervisor: Hypervisor, settings: HandlerSettings,
               domain_type: str) -> tuple[NodeHeartbeat, VmiAgent, ConsoleServer, SelfFence]:
    """What this node runs: its heartbeat, the VMI agent, the serial-console server and the
    self-fence (none started)."""
    from shared.images import ImageStore

    images = ImageStore(settings.image_dir or settings.state_dir / "images")
    heartbeat = NodeHeartbeat(store, settings.node_name, hypervisor.node_info, interval=settings.heartbeat_interval,
                              annotations=compute_node_annotations(settings),
                              internal_ip=settings.migration_address)
    agent = VmiAgent(store, hypervisor, AgentConfig(
        node_name=settings.node_name, state_dir=settings.state_dir, domain_type=domain_type,
        images=images, pvc_root=settings.pvc_root, workers=settings.workers,
        stand_in_migration_seconds=settings.stand_in_migration_seconds,
        migration_address=settings.migration_address),
        bus=store.bus)
    fence = SelfFence(heartbeat, agent, fence_after=settings.fence_after)
    return heartbeat, agent, ConsoleServer(store.bus, hypervisor, settings.node_name), fence


async def run(ctx: ServiceContext) -> None:
    """Run the node until the process is asked to stop. Raises ``HypervisorError`` (libvirt
    unreachable) or ``ApiError`` (NATS unreachable)."""
    settings = compute_handler_settings(ctx.settings)
    problem = compute_timing_problem(heartbeat_interval=settings.heartbeat_interval, fence_after=settings.fence_after,
                                     heartbeat_timeout=None)
    if problem is not None:
        raise ValueError(problem)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    hypervisor = Hypervisor(settings.libvirt_uri)
    await hypervisor.open()
    ctx.on_exit(hypervisor.close)
    store = await ctx.connect_store(name=f"virt-handler-{settings.node_name}", retry_for=settings.connect_timeout)
    domain_type = decide_domain_type(settings)
    heartbeat, agent, console, fence = build_node(store, hypervisor, settings, domain_type)
    await heartbeat.register()
    ctx.on_exit(fence.retire)  # after the agent and the tasks stopped: the last write of this handler
    ctx.on_exit(agent.stop)
    await agent.start()
    ctx.on_exit(console.stop)
    await console.start()
    tasks = [ctx.start_task(heartbeat.run(), "node-heartbeat"), ctx.start_task(fence.run(), "self-fence")]
    if settings.health_port is not None:
        from shared.metrics import register_vmi_stats_source, unregister_vmi_stats_source

        stats = DomainStatsSnapshot(hypervisor, settings.node_name, settings.stats_interval)
        register_vmi_stats_source(stats)
        ctx.on_exit(lambda: _unregister(unregister_vmi_stats_source, stats))
        tasks.append(ctx.start_task(stats.run(), "domain-stats"))
        await ctx.serve_health(lambda: (agent.synced.is_set(), {"synced": agent.synced.is_set(), **describe(agent)}))
    ctx.on_exit(lambda: cancel_and_wait(tasks))
    log.info("virt-handler for node %s running on %s (domain type %s)", settings.node_name,
             settings.libvirt_uri, domain_type)
    await ctx.wait_stopped()
    log.info("virt-handler stopping (domains keep running)")


async def _unregister(unregister: Any, source: Any) -> None:
    unregister(source)


def _describe_failure(err: BaseException, settings: CommonSettings) -> str:
    if isinstance(err, HypervisorError):
        return f"virt-handler: cannot use libvirt at {settings.params['libvirt_uri']}: {err.message}"
    return f"virt-handler: {err}"


def _default_node_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    return value or default_node_name()


SERVICE = ServiceDefinition(
    name="virt-handler", summary="Run the virt-handler of one node.", run=run, state_dir_required=True,
    state_dir_help="Directory for per-VMI files (overlays, ISOs, console logs).",
    health_help="Serve /healthz (200 once synced) and /metrics (per-VMI libvirt statistics) on this port.",
    options=[
        click.option("--node-name", default=None, callback=_default_node_name,
                     help="Name of this node (default: $NODE_NAME or the host name)."),
        click.option("--libvirt-uri", default="qemu:///system", show_default=True,
                     help="libvirt connection (test:///default or test:///<host.xml> for the test driver)."),
        click.option("--image-dir", type=click.Path(path_type=Path), default=None,
                     help="Local OCI image store (default: <state-dir>/images)."),
        click.option("--domain-type", type=click.Choice(["auto", "kvm", "qemu", "test"]), default="auto",
                     show_default=True, help="Domain type; auto = test for test://, KVM when usable, else TCG."),
        click.option("--heartbeat-interval", default=DEFAULT_HEARTBEAT_INTERVAL, show_default=True, type=float,
                     help="Seconds between Node heartbeats."),
        click.option("--fence-after", default=DEFAULT_FENCE_AFTER, show_default=True, type=float,
                     help="Seconds without a heartbeat the store acknowledged after which this handler destroys its "
                          "guests (self-fence: virt-controller may replace them after its --heartbeat-timeout, which "
                          "must exceed this plus its --fence-margin); 0 turns it off (its VMIs are then never "
                          "declared lost)."),
        click.option("--workers", default=8, show_default=True, help="VMIs reconciled concurrently."),
        click.option("--migration-uri", default=None,
                     help="libvirt URI by which other nodes' libvirtd reach this node's for live migration "
                          "(default: from --libvirt-uri; qemu:///system becomes the system daemon's socket "
                          "through /proc/<pid>/root)."),
        click.option("--migration-address", default="127.0.0.1", show_default=True,
                     help="This node's address for incoming migration data (the VMI's "
                          "migrationState.targetNodeAddress; a host's own address on a cluster); also the "
                          "Node's InternalIP address."),
        click.option("--pvc-root", type=click.Path(path_type=Path), default=DEFAULT_PVC_ROOT, show_default=True,
                     help="Directory of PersistentVolumeClaim disks: <pvc-root>/<namespace>/<claim>/disk.img."),
        click.option("--stand-in-migration-seconds", default=1.0, show_default=True, type=float,
                     help="Duration of a STAND-IN migration on the test driver (which cannot migrate)."),
    ],
    failures=(HypervisorError, ApiError, ValueError), describe=_describe_failure,
    tracing_attributes=lambda settings: TracingIdentity(node_name=settings.params["node_name"]))

main = service_command(SERVICE)

if __name__ == "__main__":
    main()
