"""``virt-handler``: the per-node process (Node heartbeat + VMI sync loop on one libvirt).

Usage::

    virt-handler --nats nats://127.0.0.1:4222 --node-name node1 \\
                 --libvirt-uri qemu:///system --state-dir /var/lib/kubevirt-py/node1

Owns reading the settings once, opening libvirt and the store (one readable line and exit
code 1 when either is unreachable), deciding the domain type (``test`` for ``test://`` URIs,
``kvm`` when the KVM probe passes, else ``qemu``/TCG), registering the Node, and running the
heartbeat, the agent and the serial-console server (``console.py``) until SIGTERM/SIGINT. Stopping leaves every domain running: the next
handler adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from services.virt_handler.agent import (
    AgentConfig,
    VmiAgent,
    apply_cancellation,
    compute_domain_type,
    compute_key_of_domain,
    describe,
)
from services.virt_handler.console import ConsoleServer
from services.virt_handler.hypervisor import Hypervisor, HypervisorError
from services.virt_handler.node import NodeHeartbeat, default_node_name
from shared import trace_store, tracing
from shared.errors import ApiError

log = logging.getLogger("kubevirt.virt_handler")


@dataclass(frozen=True)
class HandlerSettings:
    """Everything virt-handler is configured with (seconds for intervals).

    ``domain_type`` ``auto`` decides from the URI and the KVM probe; ``image_dir`` is the local
    OCI image store for containerDisk/kernelBoot images (default ``<state_dir>/images``).
    """

    nats_servers: tuple[str, ...]
    node_name: str
    libvirt_uri: str
    state_dir: Path
    image_dir: Path | None = None
    bucket_prefix: str = "kv_"
    domain_type: str = "auto"
    heartbeat_interval: float = 5.0
    workers: int = 8
    connect_timeout: float = 30.0
    health_port: int | None = None
    stats_interval: float = 10.0


ACCELERATION_RECORD = "domain-type"


def decide_domain_type(settings: HandlerSettings) -> str:
    """The ``<domain type>`` for this node (see module docstring). The KVM probe's answer is
    kept in ``<state_dir>/domain-type``: a restarted handler does not probe again (on this
    machine a probe's QEMU can stay stuck in the kernel, so probes must be rare)."""
    if settings.domain_type != "auto":
        return settings.domain_type
    if settings.libvirt_uri.startswith("test:"):
        return "test"
    record = settings.state_dir / ACCELERATION_RECORD
    try:
        recorded = record.read_text().strip()
    except OSError:
        recorded = ""
    if recorded in ("kvm", "qemu"):
        return recorded
    decided = _probe_domain_type(settings)
    try:
        record.write_text(decided + "\n")
    except OSError as err:
        log.warning("cannot record the domain type in %s: %s", record, err)
    return decided


def _probe_domain_type(settings: HandlerSettings) -> str:
    try:
        from services.virt_handler import kvm_probe
        usable = bool(kvm_probe.is_kvm_usable())
    except (ImportError, AttributeError):
        usable = False
    except Exception as err:  # a probe that fails means no KVM
        log.info("KVM probe failed (%s); using TCG", err)
        usable = False
    return compute_domain_type(settings.libvirt_uri, usable)


class DomainStatsSnapshot:
    """Per-VMI libvirt statistics refreshed every ``interval`` s off the scrape path (a scrape
    never waits on libvirt); registered as a ``shared.metrics`` VMI stats source."""

    def __init__(self, hypervisor: Hypervisor, node_name: str, interval: float):
        self.hypervisor = hypervisor
        self.node_name = node_name
        self.interval = interval
        self.samples: dict[tuple[str, str, str], dict[str, float]] = {}

    def __call__(self) -> dict[tuple[str, str, str], dict[str, float]]:
        return self.samples

    async def run(self) -> None:
        while True:
            try:
                stats = await self.hypervisor.domain_stats()
                samples = {}
                for name, fields in stats.items():
                    key = compute_key_of_domain(name)
                    if key is not None and fields:
                        namespace, vmi = key.split("/", 1)
                        samples[(self.node_name, namespace, vmi)] = fields
                self.samples = samples
            except HypervisorError as err:
                log.debug("domain statistics unavailable: %s", err)
            await asyncio.sleep(self.interval)


async def _serve_health(agent: VmiAgent, port: int):
    from aiohttp import web

    from shared.metrics import apply_metrics_server

    async def healthz(_request):
        synced = agent.synced.is_set()
        return web.json_response({"synced": synced, **describe(agent)}, status=200 if synced else 503)

    return await apply_metrics_server(port, extra_routes=lambda app: app.router.add_get("/healthz", healthz))


async def _connect_store(settings: HandlerSettings):
    from shared.store import ObjectStore

    async for attempt in AsyncRetrying(stop=stop_after_delay(settings.connect_timeout), wait=wait_fixed(0.5),
                                       retry=retry_if_exception_type(ApiError), reraise=True):
        with attempt:
            return await ObjectStore.connect(list(settings.nats_servers), bucket_prefix=settings.bucket_prefix,
                                             name=f"virt-handler-{settings.node_name}")
    raise AssertionError("unreachable")  # pragma: no cover


async def run(settings: HandlerSettings, stop: asyncio.Event | None = None) -> None:
    """Run the handler until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None).

    Raises ``HypervisorError`` (libvirt unreachable) or ``ApiError`` (NATS unreachable).
    """
    from shared.images import ImageStore

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    hypervisor = Hypervisor(settings.libvirt_uri)
    await hypervisor.open()
    store = None
    agent = None
    console = None
    heartbeat_task = None
    stats_task = None
    health_runner = None
    try:
        store = await _connect_store(settings)
        await trace_store.attach_trace_store(store.bus, store.prefix)  # no-op unless main() set tracing up
        domain_type = decide_domain_type(settings)
        images = ImageStore(settings.image_dir or settings.state_dir / "images")
        heartbeat = NodeHeartbeat(store, settings.node_name, hypervisor.node_info,
                                  interval=settings.heartbeat_interval)
        await heartbeat.register()
        agent = VmiAgent(store, hypervisor, AgentConfig(
            node_name=settings.node_name, state_dir=settings.state_dir, domain_type=domain_type,
            images=images, workers=settings.workers), bus=store.bus)
        await agent.start()
        console = ConsoleServer(store.bus, hypervisor, settings.node_name)
        await console.start()
        heartbeat_task = asyncio.get_running_loop().create_task(heartbeat.run(), name="node-heartbeat")
        if settings.health_port is not None:
            from shared.metrics import register_vmi_stats_source
            stats = DomainStatsSnapshot(hypervisor, settings.node_name, settings.stats_interval)
            register_vmi_stats_source(stats)
            stats_task = asyncio.get_running_loop().create_task(stats.run(), name="domain-stats")
            health_runner = await _serve_health(agent, settings.health_port)
        log.info("virt-handler for node %s running on %s (domain type %s)", settings.node_name,
                 settings.libvirt_uri, domain_type)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("virt-handler stopping (domains keep running)")
    finally:
        await apply_cancellation([t for t in (heartbeat_task, stats_task) if t is not None])
        if health_runner is not None:
            from shared.metrics import unregister_vmi_stats_source
            unregister_vmi_stats_source(stats)
            await health_runner.cleanup()
        if console is not None:
            await console.stop()
        if agent is not None:
            await agent.stop()
        if store is not None:
            await store.close()
        await hypervisor.close()


@click.command(name="virt-handler", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nats", "nats_servers", multiple=True, default=["nats://127.0.0.1:4222"], show_default=True,
              help="NATS server URL (repeat for a cluster).")
@click.option("--node-name", default=None, help="Name of this node (default: $NODE_NAME or the host name).")
@click.option("--libvirt-uri", default="qemu:///system", show_default=True,
              help="libvirt connection (test:///default or test:///<host.xml> for the test driver).")
@click.option("--state-dir", type=click.Path(path_type=Path), required=True,
              help="Directory for per-VMI files (overlays, ISOs, console logs).")
@click.option("--image-dir", type=click.Path(path_type=Path), default=None,
              help="Local OCI image store (default: <state-dir>/images).")
@click.option("--bucket-prefix", default="kv_", show_default=True, help="Store bucket prefix.")
@click.option("--domain-type", type=click.Choice(["auto", "kvm", "qemu", "test"]), default="auto",
              show_default=True, help="Domain type; auto = test for test://, KVM when usable, else TCG.")
@click.option("--heartbeat-interval", default=5.0, show_default=True, help="Seconds between Node heartbeats.")
@click.option("--workers", default=8, show_default=True, help="VMIs reconciled concurrently.")
@click.option("--health-port", type=int, default=None,
              help="Serve /healthz (200 once synced) and /metrics (per-VMI libvirt statistics) on this port.")
@click.option("--log-level", default="INFO", show_default=True)
def main(nats_servers: tuple[str, ...], node_name: str | None, libvirt_uri: str, state_dir: Path,
         image_dir: Path | None, bucket_prefix: str, domain_type: str, heartbeat_interval: float, workers: int,
         health_port: int | None, log_level: str) -> None:
    """Run the virt-handler of one node."""
    from shared.logging_setup import apply_service_logging  # JSON lines; $KUBEVIRT_PY_LOG_FORMAT=text for text

    apply_service_logging("virt-handler", log_level)
    settings = HandlerSettings(nats_servers=nats_servers, node_name=node_name or default_node_name(),
                               libvirt_uri=libvirt_uri, state_dir=state_dir, image_dir=image_dir,
                               bucket_prefix=bucket_prefix, domain_type=domain_type,
                               heartbeat_interval=heartbeat_interval, workers=workers, health_port=health_port)
    try:
        tracing.setup("virt-handler", node_name=settings.node_name)
        asyncio.run(run(settings))
    except HypervisorError as err:
        click.echo(f"virt-handler: cannot use libvirt at {libvirt_uri}: {err.message}", err=True)
        sys.exit(1)
    except ApiError as err:
        click.echo(f"virt-handler: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
