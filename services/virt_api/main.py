"""virt-api process entry point: ``virt-api --nats URL --state-dir DIR [--port N]``.

Owns what virt-api adds to :mod:`shared.service`'s start-up: TLS material (its own in the state
directory's ``pki/``, or ``--tls-cert-file``/``--tls-private-key-file``), authentication and
authorization by ``--authorization-mode`` (:mod:`services.virt_api.auth`: ``token``, the bearer
token in the state directory; ``delegated``, an aggregated API server of a Kubernetes cluster with
kube-apiserver's ``--requestheader-*`` options, reached with ``--kubeconfig`` or ``--in-cluster``),
the subresource modules, and serving HTTPS (HTTP only with ``--insecure-http``, for tests) until
SIGTERM/SIGINT. Every replica serves; the one holding the Lease
``kubevirt/virt-api-store-maintenance`` also runs the store maintenance
(:mod:`services.virt_api.store_maintenance`: compaction, garbage collection). The store
connection is retried for 30 s (NATS may still be starting). Failures print one readable line
and exit non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from services.virt_api.app import create_app
from services.virt_api.auth import RequestAuth, apply_token_file
from services.virt_api.authentication import (
    DEFAULT_EXTRA_HEADER_PREFIXES,
    DEFAULT_GROUP_HEADERS,
    DEFAULT_USERNAME_HEADERS,
    RequestHeaderConfig,
)
from services.virt_api.delegation import KubernetesDelegate
from services.virt_api.store_maintenance import MaintenanceSettings, StoreMaintenance
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virt_api.tls import DEFAULT_HOSTS, apply_serving_pki, server_ssl_context
from shared.kube_client import apply_api_client, kubernetes_client_options
from shared.service import ServiceContext, ServiceDefinition, leader_election_options, service_command

log = logging.getLogger("kubevirt.virt_api")

#: Seconds the first store connection is retried.
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class AuthOptions:
    """The authentication and authorization options, checked: ``mode`` (``token``/``delegated``),
    the serving certificate files (None: virt-api's own), and the request-header options
    (``client_ca_file`` None: delegated mode reads them from the cluster; token mode has none)."""

    mode: str
    tls_cert_file: Path | None
    tls_private_key_file: Path | None
    client_ca_file: Path | None
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_header_prefixes: tuple[str, ...]


_HEADER_OPTIONS = {"requestheader_allowed_names": "--requestheader-allowed-names",
                   "requestheader_username_headers": "--requestheader-username-headers",
                   "requestheader_group_headers": "--requestheader-group-headers",
                   "requestheader_extra_headers_prefix": "--requestheader-extra-headers-prefix"}


def compute_auth_options(params: Mapping[str, Any]) -> AuthOptions:
    """Check the options' combinations (raises click.UsageError naming the wrong one): the TLS
    files go together and not with ``--insecure-http``; the request-header options need a TLS
    listener and ``--authorization-mode delegated`` (in token mode every authenticated caller
    may do everything, so no proxy may name users); the ``--requestheader-*`` lists need
    ``--requestheader-client-ca-file``; ``--kubeconfig``/``--in-cluster`` go with delegated.
    (The files are read at start, not when parsed: a manifest names paths of the pod.)
    List options take repeated or comma-separated values, as kube-apiserver's do."""
    cert, key, ca = params["tls_cert_file"], params["tls_private_key_file"], params["requestheader_client_ca_file"]
    delegated = params["authorization_mode"] == "delegated"
    lists = {name: _csv(params[name]) for name in _HEADER_OPTIONS}
    if (cert is None) != (key is None):
        raise click.UsageError("give --tls-cert-file and --tls-private-key-file together")
    if params["insecure_http"] and (cert is not None or ca is not None):
        raise click.UsageError("--tls-cert-file and --requestheader-client-ca-file need TLS (no --insecure-http)")
    if ca is not None and not delegated:
        raise click.UsageError("--requestheader-client-ca-file needs --authorization-mode delegated")
    given = [flag for name, flag in _HEADER_OPTIONS.items() if lists[name]]
    if given and ca is None:
        raise click.UsageError(f"{given[0]} goes with --requestheader-client-ca-file")
    if not delegated and (params["kubeconfig"] is not None or params["in_cluster"]):
        raise click.UsageError("--kubeconfig and --in-cluster go with --authorization-mode delegated")
    return AuthOptions(
        mode=params["authorization_mode"], tls_cert_file=cert, tls_private_key_file=key, client_ca_file=ca,
        allowed_names=lists["requestheader_allowed_names"],
        username_headers=lists["requestheader_username_headers"] or DEFAULT_USERNAME_HEADERS,
        group_headers=lists["requestheader_group_headers"] or DEFAULT_GROUP_HEADERS,
        extra_header_prefixes=lists["requestheader_extra_headers_prefix"] or DEFAULT_EXTRA_HEADER_PREFIXES)


def _csv(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def build_app(store: Any, token: str | None, params: Mapping[str, Any],
              auth: RequestAuth | None = None) -> web.Application:
    """The aiohttp application this process serves (subresource modules loaded)."""
    registry = SubresourceRegistry()
    apply_subresource_modules(registry)
    return create_app(store, token=token, subresources=registry, server_address=f"{params['host']}:{params['port']}",
                      auth=auth)


async def apply_auth(ctx: ServiceContext, options: AuthOptions) -> tuple[RequestAuth, RequestHeaderConfig | None]:
    """The request authentication of ``options`` and the front proxy's settings (read from the
    cluster in delegated mode without ``--requestheader-client-ca-file``)."""
    if options.mode == "token":
        state_dir: Path = ctx.settings.state_dir  # type: ignore[assignment]  # required option
        return RequestAuth(token=apply_token_file(state_dir / "token")), None
    delegate = KubernetesDelegate(apply_api_client(ctx.params["kubeconfig"], ctx.params["in_cluster"],
                                                   needed_for="--authorization-mode delegated"))

    async def close() -> None:
        delegate.close()
    ctx.on_exit(close)
    request_header: RequestHeaderConfig | None = None
    if options.client_ca_file is not None:
        request_header = RequestHeaderConfig(
            client_ca_pem=options.client_ca_file.read_text(), allowed_names=options.allowed_names,
            username_headers=options.username_headers, group_headers=options.group_headers,
            extra_header_prefixes=options.extra_header_prefixes)
    elif not ctx.params["insecure_http"]:
        request_header = await delegate.read_request_header_config()
    return RequestAuth(request_header=request_header, delegate=delegate), request_header


async def run(ctx: ServiceContext) -> None:
    """Serve the API until the process is asked to stop."""
    params = ctx.params
    options = compute_auth_options(params)
    state_dir: Path = ctx.settings.state_dir  # type: ignore[assignment]  # required option
    auth, request_header = await apply_auth(ctx, options)
    client_ca = request_header.client_ca_pem if request_header is not None else None
    host = params["host"]
    ssl_ctx = None
    if options.tls_cert_file is not None and options.tls_private_key_file is not None:
        ssl_ctx = server_ssl_context(options.tls_cert_file, options.tls_private_key_file, client_ca)
    elif not params["insecure_http"]:
        hosts = tuple(dict.fromkeys([*DEFAULT_HOSTS, host, *params["tls_san"]]))
        ssl_ctx = apply_serving_pki(state_dir / "pki", hosts).server_ssl_context(client_ca)
    store = await ctx.connect_store(name="virt-api", retry_for=CONNECT_TIMEOUT, retry_on=(Exception,))
    # handler_cancellation: a watch whose client went away ends at once (writes are shielded).
    runner = web.AppRunner(build_app(store, None, params, auth), handler_cancellation=True, access_log=None)
    ctx.on_exit(runner.cleanup)
    await runner.setup()
    await web.TCPSite(runner, host, params["port"], ssl_context=ssl_ctx, shutdown_timeout=5.0).start()
    port = runner.addresses[0][1]
    if params["port_file"] is not None:
        params["port_file"].write_text(f"{port}\n")
    await ctx.serve_health()
    if params["store_maintenance_interval"] > 0:
        maintenance = StoreMaintenance(
            store, params["identity"],
            MaintenanceSettings(interval=params["store_maintenance_interval"],
                                compaction_interval=params["store_compaction_interval"]),
            lease_duration=params["lease_duration"], renew_deadline=params["renew_deadline"],
            retry_period=params["retry_period"])
        ctx.start_task(maintenance.run(), "store-maintenance")
    log.info("virt-api serving on %s://%s:%s (NATS %s, authorization %s)",
             "http" if params["insecure_http"] else "https", host, port, ",".join(ctx.settings.nats_servers),
             options.mode)
    await ctx.wait_stopped()
    log.info("virt-api stopping")


def describe_failure(err: BaseException) -> str:
    """The one line a failed start prints: a wrong option as itself, anything else with its type."""
    if isinstance(err, click.UsageError):
        return f"virt-api: {err.format_message()}"
    return f"virt-api: {err.__class__.__name__}: {err}"


SERVICE = ServiceDefinition(
    name="virt-api", summary="Serve KubeVirt's API (Kubernetes REST conventions) backed by NATS JetStream.",
    run=run, nats_required=True, state_dir_required=True,
    state_dir_help="Directory for pki/ and token (what --tls-cert-file and delegated mode do not use).",
    health_help="Also serve /healthz and /metrics over plain HTTP on this port (the API port serves both).",
    options=[
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        click.option("--port", default=8443, show_default=True, type=int, help="Port (0 = pick a free one)."),
        click.option("--port-file", type=click.Path(path_type=Path), default=None,
                     help="Write the bound port here."),
        click.option("--tls-san", multiple=True, default=(),
                     help="Another address or name the serving certificate covers (repeatable; e.g. every "
                          "host of a cluster, so that replicas share one certificate)."),
        click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (tests only; TLS is the default)."),
        *leader_election_options(),
        click.option("--store-maintenance-interval", type=click.FloatRange(min=0), default=30.0, show_default=True,
                     help="Seconds between store maintenance passes, each collecting the dependents of deleted "
                          "owners (Kubernetes' garbage collector); one replica at a time maintains (Lease "
                          "kubevirt/virt-api-store-maintenance). 0: this replica never maintains."),
        click.option("--store-compaction-interval", type=click.FloatRange(min=0), default=300.0, show_default=True,
                     help="Seconds between compactions of the store (purge of delete markers older than an hour; "
                          "kube-apiserver's --etcd-compaction-interval), done by the maintaining replica."),
        click.option("--tls-cert-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Serve this certificate (PEM, with its chain) instead of one issued from the "
                          "installation's CA in the state directory."),
        click.option("--tls-private-key-file", type=click.Path(path_type=Path, dir_okay=False),
                     default=None, help="The private key of --tls-cert-file (PEM)."),
        click.option("--authorization-mode", type=click.Choice(["token", "delegated"]), default="token",
                     show_default=True,
                     help="token: the installation's bearer token, whose holder may do everything; delegated: as "
                          "an aggregated API server, front-proxied users and TokenReview for bearer tokens, "
                          "SubjectAccessReview for every request, asked of the Kubernetes API server."),
        *kubernetes_client_options("With --authorization-mode delegated"),
        click.option("--requestheader-client-ca-file", type=click.Path(path_type=Path, dir_okay=False),
                     default=None,
                     help="CA (PEM) of the front proxy's client certificate: a request with such a certificate "
                          "is the user its --requestheader-username-headers name (delegated mode; default: "
                          "the ConfigMap kube-system/extension-apiserver-authentication)."),
        click.option("--requestheader-allowed-names", multiple=True, default=(),
                     help="Common names the front proxy's certificate may have (repeat or comma-separate; "
                          "empty: any certificate of --requestheader-client-ca-file)."),
        click.option("--requestheader-username-headers", multiple=True, default=(),
                     help="Headers naming the user; the first non-empty one wins [default: X-Remote-User]."),
        click.option("--requestheader-group-headers", multiple=True, default=(),
                     help="Headers naming the user's groups [default: X-Remote-Group]."),
        click.option("--requestheader-extra-headers-prefix", multiple=True, default=(),
                     help="Header prefixes of the user's extra fields [default: X-Remote-Extra-]."),
    ],
    failures=(Exception,), describe=lambda err, _settings: describe_failure(err))

cli = service_command(SERVICE)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
