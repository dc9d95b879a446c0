"""One start-up for every service process (virt-api, virt-controller, scheduler-bridge, virt-handler).

Owns what each service used to repeat in its ``main.py``:

* the command-line arguments every service takes (:func:`common_options`): ``--nats`` (repeatable;
  a cluster), ``--nats-credentials`` (this service's NATS user, a :mod:`shared.nats_auth` file),
  ``--nats-ca`` (the CA of the NATS servers' TLS certificates), ``--state-dir``, ``--bucket-prefix``,
  ``--store-replicas`` (JetStream replicas of the buckets and streams this process creates: 1 on
  one server, 3 on a NATS cluster),
  ``--health-port`` (``/healthz`` and ``/metrics``) on ``--health-host`` (default 127.0.0.1),
  ``--log-level``, ``--log-format`` (``json``/``text``, default
  ``$KUBEVIRT_PY_LOG_FORMAT`` else ``json``) and ``--otlp-endpoint`` (sets
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` for this process; tracing itself is :mod:`shared.tracing`);
* logging (:mod:`shared.logging_setup`) and tracing set-up before the event loop starts;
* the NATS connection: :meth:`ServiceContext.connect_store` opens the :class:`ObjectStore` (which
  connects through :mod:`shared.bus`), optionally retrying while NATS is still starting, and
  attaches the trace store;
* SIGTERM/SIGINT: both set :attr:`ServiceContext.stop`; the service's coroutine returns after
  :meth:`ServiceContext.wait_stopped` and everything registered with
  :meth:`ServiceContext.on_exit` is undone newest first (also when start-up fails half-way);
* the health and metrics endpoint: :meth:`ServiceContext.serve_health` serves ``GET /healthz``
  (200 when the service's check says ready, else 503, JSON body) and ``GET /metrics``
  (Prometheus text) on ``127.0.0.1:<--health-port>``;
* the failure policy: an expected failure (:attr:`ServiceDefinition.failures`) is one readable
  line on stderr, ``<service>: <message>``, and exit code 1, never a traceback.

A service declares itself with :class:`ServiceDefinition` (its name, its own click options and
its ``run(ctx)`` coroutine) and gets its click command from :func:`service_command`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import click

from shared import trace_store, tracing
from shared.errors import ApiError
from shared.logging_setup import LOG_FORMAT_ENV, apply_service_logging

if TYPE_CHECKING:  # pragma: no cover - typing only
    from aiohttp import web

    from shared.leader_process import LeaderElectedProcess
    from shared.store import ObjectStore

log = logging.getLogger("kubevirt.service")

#: NATS URL used when ``--nats`` is not given (services whose NATS URL is optional).
DEFAULT_NATS = "nats://127.0.0.1:4222"
#: Environment variables of ``--nats-credentials`` and ``--nats-ca`` (e.g. from a Secret's mount).
NATS_CREDENTIALS_ENV = "KUBEVIRT_PY_NATS_CREDENTIALS"
NATS_CA_ENV = "KUBEVIRT_PY_NATS_CA"
#: Signals that ask a service to stop gracefully.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: A readiness check: ``(ready, JSON-serialisable body)``.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
#: A click option decorator (``click.option(...)``).
Option = Callable[[Callable[..., Any]], Callable[..., Any]]


class TracingIdentity(TypedDict, total=False):
    """Resource attributes of a service's traces (:func:`shared.tracing.setup`'s keywords)."""

    node_name: str
    instance_id: str


@dataclass(frozen=True)
class CommonSettings:
    """The arguments every service takes (see the module docstring); ``params`` holds the
    service's own options by their click parameter name."""

    service: str
    nats_servers: tuple[str, ...]
    state_dir: Path | None = None
    bucket_prefix: str = "kv_"
    store_replicas: int = 1
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "json"
    otlp_endpoint: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    nats_credentials: Path | None = None
    nats_ca: Path | None = None


class ServiceContext:
    """What a service's ``run`` coroutine works with: its settings, the stop event, the store
    connection, the health endpoint and the clean-up stack (undone newest first on return)."""

    def __init__(self, settings: CommonSettings, stop: asyncio.Event, exits: AsyncExitStack) -> None:
        self.settings = settings
        self.stop = stop
        self._exits = exits

    @property
    def params(self) -> Mapping[str, Any]:
        """The service's own options (click parameter name -> value)."""
        return self.settings.params

    def on_exit(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Await ``callback()`` when the service stops (newest registration first)."""
        self._exits.push_async_callback(callback)

    async def connect_store(self, *, name: str | None = None, retry_for: float = 0.0,
                            retry_on: tuple[type[BaseException], ...] = (ApiError,)) -> ObjectStore:
        """The :class:`ObjectStore` on ``--nats`` with ``--bucket-prefix`` (and
        ``--nats-credentials``, ``--nats-ca``), as NATS client ``name`` (default: the service's
        name), closed when the service stops; buckets and the trace stream it creates have
        ``--store-replicas`` replicas. With
        ``retry_for`` > 0 seconds, a failure of a type in ``retry_on`` is retried every 0.5 s
        until then (NATS may still be starting); the last failure is raised after that
        (``shared.errors.ServiceUnavailable`` when NATS cannot be reached)."""
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

        from shared.nats_auth import compute_writable_plurals, read_credentials
        from shared.store import ObjectStore

        settings = self.settings
        writable = None  # what a cascade may delete itself (shared.nats_auth); the rest is collected
        if settings.nats_credentials is not None:
            writable = compute_writable_plurals(read_credentials(settings.nats_credentials).user)
        store: ObjectStore | None = None
        async for attempt in AsyncRetrying(stop=stop_after_delay(retry_for), wait=wait_fixed(0.5),
                                           retry=retry_if_exception_type(retry_on), reraise=True):
            with attempt:
                store = await ObjectStore.connect(list(settings.nats_servers), bucket_prefix=settings.bucket_prefix,
                                                  replicas=settings.store_replicas, name=name or settings.service,
                                                  credentials=settings.nats_credentials, tls_ca=settings.nats_ca,
                                                  writable_plurals=writable)
        assert store is not None
        self.on_exit(store.close)
        # no-op unless tracing is on
        await trace_store.attach_trace_store(store.bus, store.prefix, replicas=settings.store_replicas)
        return store

    async def serve_health(self, check: HealthCheck | None = None, *,
                           routes: Callable[[web.Application], object] | None = None) -> None:
        """Serve ``/healthz`` (``check()``: 200 when ready, else 503; plain ``ok`` without a
        check), ``/metrics`` and ``routes(app)`` on ``<--health-host>:<--health-port>`` until the
        service stops. Does nothing without ``--health-port``."""
        port = self.settings.health_port
        if port is None:
            return
        from aiohttp import web

        from shared.metrics import apply_metrics_server

        async def healthz(_request: web.Request) -> web.Response:
            assert check is not None
            ready, body = check()
            return web.json_response(body, status=200 if ready else 503)

        def add_routes(app: web.Application) -> None:
            if check is not None:
                app.router.add_get("/healthz", healthz)
            if routes is not None:
                routes(app)

        runner = await apply_metrics_server(port, self.settings.health_host, extra_routes=add_routes)
        self.on_exit(runner.cleanup)

    def start_task(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task cancelled (and awaited) when the service stops."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.on_exit(cancel)
        return task

    async def wait_stopped(self, *watched: asyncio.Future[Any]) -> None:
        """Return once SIGTERM/SIGINT arrived (or :attr:`stop` was set), or as soon as one of
        ``watched`` ends (its exception, if any, is raised)."""
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        for fut in done:
            if fut is not stopper and not fut.cancelled():
                fut.result()


    async def run_leader_elected(self, manager: LeaderElectedProcess, name: str) -> None:
        """Run ``manager`` (a :class:`shared.leader_process.LeaderElectedProcess`) until the
        service stops: ``/healthz`` is ready once its informers have synced, ``/leader`` answers
        ``{"identity", "leader"}``; ``name`` names its task. Its failure is raised."""
        from aiohttp import web

        async def leader(_: web.Request) -> web.Response:
            return web.json_response({"identity": manager.identity, "leader": manager.is_leader})

        await self.serve_health(lambda: (manager.has_synced(), {"synced": manager.has_synced()}),
                                routes=lambda app: app.router.add_get("/leader", leader))
        await self.wait_stopped(self.start_task(manager.run(), name))


#: A service's run coroutine.
RunService = Callable[[ServiceContext], Awaitable[None]]


def describe_failure(service: str, err: BaseException) -> str:
    """The default one-line failure message: ``<service>: <error>``."""
    return f"{service}: {err}"


@dataclass(frozen=True)
class ServiceDefinition:
    """One service process.

    ``run(ctx)`` is its coroutine; ``options`` its own click options (applied after the
    common ones); ``summary`` the command's help. ``nats_required`` / ``state_dir_required``
    make those common options mandatory; ``*_help`` adapt their help text. ``failures`` are
    the exception types reported as one line by ``describe(err, settings)`` with exit code 1.
    ``tracing_attributes(settings)`` gives :func:`shared.tracing.setup`'s keyword arguments
    (``node_name``, ``instance_id``).
    """

    name: str
    summary: str
    run: RunService
    options: Sequence[Option] = ()
    nats_required: bool = False
    state_dir_required: bool = False
    state_dir_help: str = "Directory for this service's local state."
    health_help: str = "Serve /healthz and /metrics on this port."
    failures: tuple[type[BaseException], ...] = (ApiError,)
    describe: Callable[[BaseException, CommonSettings], str] | None = None
    tracing_attributes: Callable[[CommonSettings], TracingIdentity] | None = None


def common_options(definition: ServiceDefinition) -> list[Option]:
    """The click options every service takes (first on its command line's help)."""
    nats_kwargs: dict[str, Any] = (
        {"required": True} if definition.nats_required else {"default": [DEFAULT_NATS], "show_default": True})
    return [
        click.option("--nats", "nats_servers", multiple=True, **nats_kwargs,
                     help="NATS server URL (repeat for a cluster)."),
        click.option("--nats-credentials", envvar=NATS_CREDENTIALS_ENV, default=None,
                     type=click.Path(path_type=Path, dir_okay=False),
                     help=f"This service's NATS user: JSON file with user and password [env: {NATS_CREDENTIALS_ENV}]."),
        click.option("--nats-ca", envvar=NATS_CA_ENV, default=None, type=click.Path(path_type=Path, dir_okay=False),
                     help=f"CA certificate (PEM) of the NATS servers; connect with TLS [env: {NATS_CA_ENV}]."),
        click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False),
                     required=definition.state_dir_required, default=None, help=definition.state_dir_help),
        click.option("--bucket-prefix", default="kv_", show_default=True, help="Store bucket prefix."),
        click.option("--store-replicas", type=click.IntRange(1, 5), default=1, show_default=True,
                     help="JetStream replicas of the buckets and streams this process creates (3 on a NATS cluster)."),
        click.option("--health-port", type=int, default=None, help=definition.health_help),
        click.option("--health-host", default="127.0.0.1", show_default=True,
                     help="Address the health and metrics port listens on (a host's own address on a cluster)."),
        click.option("--log-level", default="INFO", show_default=True),
        click.option("--log-format", envvar=LOG_FORMAT_ENV, default="json", show_default=True,
                     help=f"Log lines as 'json' or as 'text' [env: {LOG_FORMAT_ENV}]."),
        click.option("--otlp-endpoint", envvar="OTEL_EXPORTER_OTLP_ENDPOINT", default=None,
                     help="Export traces by OTLP/HTTP to this URL [env: OTEL_EXPORTER_OTLP_ENDPOINT]."),
    ]


def _default_identity(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    return value or f"{socket.gethostname()}-{os.getpid()}"


def leader_election_options() -> list[Option]:
    """The options of a leader-elected service (client-go ``leaderelection``'s knobs, seconds):
    ``--id`` (replica identity, default host-pid), ``--lease-duration``, ``--renew-deadline``,
    ``--retry-period``; their values arrive as params ``identity``, ``lease_duration``,
    ``renew_deadline``, ``retry_period``."""
    return [
        click.option("--id", "identity", default=None, callback=_default_identity,
                     help="Replica identity (default: host-pid)."),
        click.option("--lease-duration", default=15.0, show_default=True, help="Leader lease duration (s)."),
        click.option("--renew-deadline", default=10.0, show_default=True, help="Leader renew deadline (s)."),
        click.option("--retry-period", default=2.0, show_default=True, help="Leader election retry period (s)."),
    ]


_COMMON = ("nats_servers", "nats_credentials", "nats_ca", "state_dir", "bucket_prefix", "store_replicas", "health_port",
           "health_host", "log_level", "log_format", "otlp_endpoint")


def compute_settings(service: str, values: Mapping[str, Any]) -> CommonSettings:
    """Split click's parsed ``values`` into the common settings and the service's ``params``."""
    params = {k: v for k, v in values.items() if k not in _COMMON}
    return CommonSettings(service=service, nats_servers=tuple(values["nats_servers"]), state_dir=values["state_dir"],
                          bucket_prefix=values["bucket_prefix"], store_replicas=values["store_replicas"],
                          health_port=values["health_port"], health_host=values.get("health_host") or "127.0.0.1",
                          log_level=values["log_level"], log_format=str(values["log_format"]).lower(),
                          otlp_endpoint=values["otlp_endpoint"], params=params,
                          nats_credentials=values.get("nats_credentials"), nats_ca=values.get("nats_ca"))


async def run_service(definition: ServiceDefinition, settings: CommonSettings,
                      stop: asyncio.Event | None = None) -> None:
    """Run ``definition.run`` until SIGTERM/SIGINT (or until ``stop`` is set, when given: then
    no signal handler is installed, for in-process use), then undo its registrations."""
    own_signals = stop is None
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    if own_signals:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncExitStack() as exits:
            await definition.run(ServiceContext(settings, stop, exits))
    finally:
        if own_signals:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)


def apply_process_setup(definition: ServiceDefinition, settings: CommonSettings) -> None:
    """Logging and tracing of this process, before its event loop starts."""
    apply_service_logging(definition.name, settings.log_level, fmt=settings.log_format)
    if settings.otlp_endpoint:  # the OTLP exporter reads its settings from the environment
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = settings.otlp_endpoint
    attributes = definition.tracing_attributes(settings) if definition.tracing_attributes else TracingIdentity()
    tracing.setup(definition.name, **attributes)


def main_of(definition: ServiceDefinition, settings: CommonSettings) -> None:
    """Set the process up, run the service, and turn an expected failure into one line on
    stderr and exit code 1 (Ctrl-C ends quietly)."""
    try:
        apply_process_setup(definition, settings)
        asyncio.run(run_service(definition, settings))
    except KeyboardInterrupt:
        pass
    except definition.failures as err:
        message = definition.describe(err, settings) if definition.describe else describe_failure(definition.name, err)
        click.echo(message, err=True)
        sys.exit(1)


def service_command(definition: ServiceDefinition) -> click.Command:
    """The click command of ``definition``: common options, then the service's own."""

    def command(**values: Any) -> None:
        main_of(definition, compute_settings(definition.name, values))

    command.__doc__ = definition.summary
    decorated: Callable[..., Any] = command
    for option in reversed([*common_options(definition), *definition.options]):
        decorated = option(decorated)
    return click.command(name=definition.name, help=definition.summary,
                         context_settings={"help_option_names": ["-h", "--help"]})(decorated)
