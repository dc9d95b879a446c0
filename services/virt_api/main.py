"""virt-api process entry point: ``virt-api --nats URL --state-dir DIR [--port N]``.

Owns: reading settings once (command line), preparing TLS material and the bearer token in the
state directory, connecting the ObjectStore to NATS (retrying for a while: NATS may still be
starting), loading subresource modules, serving HTTPS (HTTP only with ``--insecure-http``, for
tests) until SIGTERM/SIGINT, and shutting down cleanly. Failures print one readable line and
exit non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from services.virt_api.app import create_app
from services.virt_api.auth import apply_token_file
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virt_api.tls import DEFAULT_HOSTS, apply_serving_pki
from shared import trace_store, tracing

log = logging.getLogger("kubevirt.virt_api")


@dataclass(frozen=True)
class ApiSettings:
    """Everything virt-api is configured with. Paths inside ``state_dir``: ``pki/`` (CA and serving
    cert), ``token`` (bearer token). ``port`` 0 = pick a free port (written to ``port_file``)."""

    nats_servers: tuple[str, ...]
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    insecure_http: bool = False
    port_file: Path | None = None
    tls_hosts: tuple[str, ...] = field(default=DEFAULT_HOSTS)
    connect_timeout: float = 30.0

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"


async def connect_store(servers: list[str], within: float) -> object:
    """ObjectStore connected to ``servers``, retrying every 0.5 s for ``within`` seconds
    (raises the last error after that)."""
    from shared.store import ObjectStore

    async for attempt in AsyncRetrying(
        stop=stop_after_delay(within), wait=wait_fixed(0.5), retry=retry_if_exception_type(Exception), reraise=True
    ):
        with attempt:
            return await ObjectStore.connect(servers)
    raise AssertionError("unreachable")  # pragma: no cover


async def serve(settings: ApiSettings, stop: asyncio.Event | None = None) -> None:
    """Run virt-api until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    token = apply_token_file(settings.token_file)
    ssl_ctx = None
    if not settings.insecure_http:
        ssl_ctx = apply_serving_pki(settings.pki_dir, settings.tls_hosts).server_ssl_context()
    store = await connect_store(list(settings.nats_servers), settings.connect_timeout)
    await trace_store.attach_trace_store(store.bus, store.prefix)  # no-op unless main() set tracing up
    registry = SubresourceRegistry()
    apply_subresource_modules(registry)
    runner = None
    try:
        app = create_app(store, token=token, subresources=registry, server_address=f"{settings.host}:{settings.port}")
        # handler_cancellation: a watch whose client went away ends at once (writes are shielded).
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_ctx, shutdown_timeout=5.0)
        await site.start()
        port = runner.addresses[0][1]
        if settings.port_file is not None:
            settings.port_file.write_text(f"{port}\n")
        scheme = "http" if settings.insecure_http else "https"
        log.info("virt-api serving on %s://%s:%s (NATS %s)", scheme, settings.host, port,
                 ",".join(settings.nats_servers))
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("virt-api stopping")
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nats", "nats_servers", multiple=True, required=True, help="NATS server URL (repeatable).")
@click.option("--state-dir", type=click.Path(path_type=Path), required=True, help="Directory for pki/ and token.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=int, help="Port (0 = pick a free one).")
@click.option("--port-file", type=click.Path(path_type=Path), default=None, help="Write the bound port here.")
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (tests only; TLS is the default).")
@click.option("--log-level", default="INFO", show_default=True)
def cli(nats_servers: tuple[str, ...], state_dir: Path, host: str, port: int, port_file: Path | None,
        insecure_http: bool, log_level: str) -> None:
    """Serve KubeVirt's API (Kubernetes REST conventions) backed by NATS JetStream."""
    from shared.logging_setup import apply_service_logging  # JSON lines; $KUBEVIRT_PY_LOG_FORMAT=text for text

    apply_service_logging("virt-api", log_level)
    hosts = DEFAULT_HOSTS if host in DEFAULT_HOSTS else (*DEFAULT_HOSTS, host)
    settings = ApiSettings(tuple(nats_servers), state_dir, host, port, insecure_http, port_file, hosts)
    try:
        tracing.setup("virt-api")
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - one readable line, no traceback
        click.echo(f"virt-api: {err.__class__.__name__}: {err}", err=True)
        sys.exit(1)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
