"""``scheduler-bridge``: the process placing VMIs on nodes (embedded installation).

Usage: ``scheduler-bridge --nats nats://127.0.0.1:4222``. Reads settings once, connects the
store (one readable line and exit code 1 when NATS cannot be reached), runs
``service.SchedulerBridge`` until SIGTERM/SIGINT. Run one per installation: placement is
crash-safe (CAS) but resource accounting assumes a single bridge.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta

import click

from services.scheduler_bridge.service import SchedulerBridge
from shared import trace_store, tracing
from shared.errors import ApiError

log = logging.getLogger("kubevirt.scheduler_bridge")


async def _serve_health(bridge: SchedulerBridge, port: int):
    from aiohttp import web

    from shared.metrics import apply_metrics_server

    async def healthz(_request):
        synced = bridge.synced.is_set()
        body = {"synced": synced, "placements": bridge.placements, "writes": bridge.writes,
                "waiting": len(bridge.pending())}
        return web.json_response(body, status=200 if synced else 503)

    return await apply_metrics_server(port, extra_routes=lambda app: app.router.add_get("/healthz", healthz))


async def run(nats_servers: list[str], *, bucket_prefix: str, heartbeat_timeout: float,
              health_port: int | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the bridge until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    from shared.store import ObjectStore

    store = await ObjectStore.connect(nats_servers, bucket_prefix=bucket_prefix, name="scheduler-bridge")
    await trace_store.attach_trace_store(store.bus, store.prefix)  # no-op unless main() set tracing up
    bridge = SchedulerBridge(store, heartbeat_timeout=timedelta(seconds=heartbeat_timeout))
    health_runner = None
    try:
        await bridge.start()
        if health_port is not None:
            health_runner = await _serve_health(bridge, health_port)
        log.info("scheduler-bridge placing VMIs (NATS %s)", ",".join(nats_servers))
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        if health_runner is not None:
            await health_runner.cleanup()
        await bridge.stop()
        await store.close()


@click.command(name="scheduler-bridge", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nats", "nats_servers", multiple=True, default=["nats://127.0.0.1:4222"], show_default=True,
              help="NATS server URL (repeat for a cluster).")
@click.option("--bucket-prefix", default="kv_", show_default=True, help="Store bucket prefix.")
@click.option("--heartbeat-timeout", default=40.0, show_default=True,
              help="Seconds without a node heartbeat before the node is skipped.")
@click.option("--health-port", type=int, default=None, help="Serve /healthz and /metrics on this port.")
@click.option("--log-level", default="INFO", show_default=True)
def main(nats_servers: tuple[str, ...], bucket_prefix: str, heartbeat_timeout: float, health_port: int | None,
         log_level: str) -> None:
    """Place VMIs in phase Scheduling on registered nodes."""
    from shared.logging_setup import apply_service_logging  # JSON lines; $KUBEVIRT_PY_LOG_FORMAT=text for text

    apply_service_logging("scheduler-bridge", log_level)
    try:
        tracing.setup("scheduler-bridge")
        asyncio.run(run(list(nats_servers), bucket_prefix=bucket_prefix, heartbeat_timeout=heartbeat_timeout,
                        health_port=health_port))
    except ApiError as err:
        click.echo(f"scheduler-bridge: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
