"""virt-api process entry point: ``virt-api --nats URL --state-dir DIR [--port N]``.

Owns what virt-api adds to :mod:`shared.service`'s start-up: TLS material and the bearer token in
the state directory (``pki/``, ``token``), the subresource modules, and serving HTTPS (HTTP only
with ``--insecure-http``, for tests) until SIGTERM/SIGINT. The store connection is retried for
30 s (NATS may still be starting). Failures print one readable line and exit non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from services.virt_api.app import create_app
from services.virt_api.auth import apply_token_file
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virt_api.tls import DEFAULT_HOSTS, apply_serving_pki
from shared.service import ServiceContext, ServiceDefinition, service_command

log = logging.getLogger("kubevirt.virt_api")

#: Seconds the first store connection is retried.
CONNECT_TIMEOUT = 30.0


def build_app(store: Any, token: str, params: Mapping[str, Any]) -> web.Application:
    """The aiohttp application this process serves (subresource modules loaded)."""
    registry = SubresourceRegistry()
    apply_subresource_modules(registry)
    return create_app(store, token=token, subresources=registry, server_address=f"{params['host']}:{params['port']}")


async def run(ctx: ServiceContext) -> None:
    """Serve the API until the process is asked to stop."""
    params = ctx.params
    state_dir: Path = ctx.settings.state_dir  # type: ignore[assignment]  # required option
    token = apply_token_file(state_dir / "token")
    host = params["host"]
    ssl_ctx = None
    if not params["insecure_http"]:
        hosts = DEFAULT_HOSTS if host in DEFAULT_HOSTS else (*DEFAULT_HOSTS, host)
        ssl_ctx = apply_serving_pki(state_dir / "pki", hosts).server_ssl_context()
    store = await ctx.connect_store(name="virt-api", retry_for=CONNECT_TIMEOUT, retry_on=(Exception,))
    # handler_cancellation: a watch whose client went away ends at once (writes are shielded).
    runner = web.AppRunner(build_app(store, token, params), handler_cancellation=True, access_log=None)
    ctx.on_exit(runner.cleanup)
    await runner.setup()
    await web.TCPSite(runner, host, params["port"], ssl_context=ssl_ctx, shutdown_timeout=5.0).start()
    port = runner.addresses[0][1]
    if params["port_file"] is not None:
        params["port_file"].write_text(f"{port}\n")
    await ctx.serve_health()
    log.info("virt-api serving on %s://%s:%s (NATS %s)", "http" if params["insecure_http"] else "https", host, port,
             ",".join(ctx.settings.nats_servers))
    await ctx.wait_stopped()
    log.info("virt-api stopping")


SERVICE = ServiceDefinition(
    name="virt-api", summary="Serve KubeVirt's API (Kubernetes REST conventions) backed by NATS JetStream.",
    run=run, nats_required=True, state_dir_required=True, state_dir_help="Directory for pki/ and token.",
    health_help="Also serve /healthz and /metrics over plain HTTP on this port (the API port serves both).",
    options=[
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        click.option("--port", default=8443, show_default=True, type=int, help="Port (0 = pick a free one)."),
        click.option("--port-file", type=click.Path(path_type=Path), default=None,
                     help="Write the bound port here."),
        click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (tests only; TLS is the default)."),
    ],
    failures=(Exception,), describe=lambda err, _settings: f"virt-api: {err.__class__.__name__}: {err}")

cli = service_command(SERVICE)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
