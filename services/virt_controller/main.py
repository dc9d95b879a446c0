"""``virt-controller``: the control-plane process (VM, VMI and replica set controllers).

Usage: ``virt-controller --nats nats://127.0.0.1:4222 --id ctl-1``. Several may run; one leads
(Lease ``kubevirt/virt-controller`` in the store), the others stand by with warm caches.
``--health-port`` serves ``GET /healthz`` (200 once the caches are synced), ``GET /leader`` and
``GET /metrics`` (Prometheus text: workqueues, VMI phase counts and transition times, store latency).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import click
from aiohttp import web

from shared import metrics
from shared import trace_store, tracing
from shared.errors import ApiError
from shared.store import ObjectStore
from services.virt_controller.manager import ControllerManager

log = logging.getLogger("virt-controller")


async def _serve_health(manager: ControllerManager, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        synced = all(i.has_synced() for i in manager.informers)
        return web.json_response({"synced": synced}, status=200 if synced else 503)

    async def leader(_: web.Request) -> web.Response:
        return web.json_response({"identity": manager.identity, "leader": manager.is_leader})

    metrics.CONTROLLER_LEADING.labels(manager.identity).set_function(lambda: 1.0 if manager.is_leader else 0.0)
    metrics.CONTROLLER_READY.labels(manager.identity).set_function(
        lambda: 1.0 if all(i.has_synced() for i in manager.informers) else 0.0)
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/leader", leader)
    metrics.apply_metrics_route(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def run(nats: list[str], identity: str, *, bucket_prefix: str, workers: int, lease_duration: float,
              renew_deadline: float, retry_period: float, heartbeat_timeout: float, health_port: int | None) -> None:
    """Connect to the store and run the manager until SIGTERM/SIGINT."""
    store = await ObjectStore.connect(nats, bucket_prefix=bucket_prefix, name=f"virt-controller-{identity}")
    await trace_store.attach_trace_store(store.bus, store.prefix)  # no-op unless main() set tracing up
    manager = ControllerManager(store, identity, workers=workers, lease_duration=lease_duration,
                                renew_deadline=renew_deadline, retry_period=retry_period,
                                heartbeat_timeout=heartbeat_timeout)
    runner = await _serve_health(manager, health_port) if health_port is not None else None
    task = asyncio.create_task(manager.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()


@click.command(name="virt-controller")
@click.option("--nats", "nats_urls", multiple=True, default=["nats://127.0.0.1:4222"], show_default=True,
              help="NATS server URL (repeat for a cluster).")
@click.option("--id", "identity", default=None, help="Replica identity (default: host-pid).")
@click.option("--bucket-prefix", default="kv_", show_default=True, help="Store bucket prefix.")
@click.option("--workers", default=4, show_default=True, help="Worker tasks per controller.")
@click.option("--lease-duration", default=15.0, show_default=True, help="Leader lease duration (s).")
@click.option("--renew-deadline", default=10.0, show_default=True, help="Leader renew deadline (s).")
@click.option("--retry-period", default=2.0, show_default=True, help="Leader election retry period (s).")
@click.option("--heartbeat-timeout", default=40.0, show_default=True,
              help="Seconds without node heartbeat before its VMIs become Unknown.")
@click.option("--health-port", type=int, default=None, help="Serve /healthz, /leader and /metrics on this port.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Accepted for the embedded installation's uniform command line; the controller keeps "
                   "no local state (everything is in the store).")
@click.option("--log-level", default="INFO", show_default=True)
def main(nats_urls: tuple[str, ...], identity: str | None, bucket_prefix: str, workers: int,
         lease_duration: float, renew_deadline: float, retry_period: float, heartbeat_timeout: float,
         health_port: int | None, state_dir: str | None, log_level: str) -> None:
    """Run the VirtualMachine, VMI and replica set controllers."""
    from shared.logging_setup import apply_service_logging  # JSON lines; $KUBEVIRT_PY_LOG_FORMAT=text for text

    apply_service_logging("virt-controller", log_level)
    identity = identity or f"{socket.gethostname()}-{os.getpid()}"
    try:
        tracing.setup("virt-controller", instance_id=identity)
        asyncio.run(run(list(nats_urls), identity, bucket_prefix=bucket_prefix, workers=workers,
                        lease_duration=lease_duration, renew_deadline=renew_deadline,
                        retry_period=retry_period, heartbeat_timeout=heartbeat_timeout,
                        health_port=health_port))
    except (ApiError, ValueError, OSError) as err:
        click.echo(f"virt-controller: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
