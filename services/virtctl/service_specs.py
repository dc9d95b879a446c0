"""Which processes ``virtctl up`` starts, as data: one :class:`ServiceSpec` per process.

:data:`SERVICES` is started in order and stopped in reverse: nats-server, virt-api,
virt-controller, virt-migration, virt-snapshot, scheduler-bridge, virt-handler (node = this host,
``qemu:///system`` by default). Adding a service is one entry, e.g.::

    python_service("virt-controller", "services.virt_controller.main")

which runs ``python -m services.virt_controller.main --nats <url> --nats-credentials
<state>/nats/credentials/virt-controller.json --nats-ca <ca> --state-dir <state>/virt-controller``
and counts it healthy once it has stayed up for a moment (pass ``health=`` for a real probe).
Every service connects as its own NATS user (:meth:`Layout.nats_client_args`); nats-server
requires TLS and a user (:mod:`services.virtctl.nats_security`).
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from services.virtctl.host_libvirt import apply_libvirt_daemons
from services.virtctl.layout import DEFAULT_LIBVIRT_URI, Layout, load_layout
from services.virtctl.nats_security import apply_nats_security
from services.virtctl.processes import ServiceSpec, is_our_process, read_record, stays_up
from shared.natsserver import find_nats_server_binary
from shared.node_fencing import FailureTiming

#: ``up --hosts``: when a silent host's VMIs are replaced: the handlers fence after 20 s without a
#: heartbeat, the controller declares their VMIs Failed after 40 s (checked on construction: 40 >= 20 + 10)
FAILURE_TIMING = FailureTiming()
#: one machine (``up``, ``up --nodes N``): every node shares the one nats-server and the one machine,
#: so no other host could take a cut-off node's guests over; fencing would only turn a nats-server
#: outage into lost guests. Without a fence the controller never fails a silent node's VMIs (they
#: stay Unknown until the handler reports again), as KubeVirt without node remediation does.
SINGLE_MACHINE_TIMING = FailureTiming(fence_after=0.0)


# -- health probes ---------------------------------------------------------------------------
def is_http_ok(url: str, ssl_context: ssl.SSLContext | None = None, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl_context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False


def is_nats_healthy(layout: Layout) -> bool:
    """nats-server's monitoring ``/healthz`` (JetStream ready)."""
    return is_http_ok(f"http://127.0.0.1:{layout.nats_http_port}/healthz")


def is_api_ready(layout: Layout) -> bool:
    """virt-api's ``/readyz`` over TLS, trusting only the installation's CA."""
    if not layout.ca_cert.exists():
        return False
    return is_http_ok(f"{layout.api_url}/readyz", ssl.create_default_context(cafile=str(layout.ca_cert)))


def healthz_probe(port_of: Callable[[Layout], int]) -> Callable[[Layout], bool]:
    """A probe of a service's ``http://127.0.0.1:<port>/healthz`` (200 once its caches synced)."""
    return lambda layout: is_http_ok(f"http://127.0.0.1:{port_of(layout)}/healthz")


def health_port_args(port_of: Callable[[Layout], int]) -> Callable[[Layout], list[str]]:
    """``["--health-port", <port>]`` of a service."""
    return lambda layout: ["--health-port", str(port_of(layout))]


# -- service specs ---------------------------------------------------------------------------
def python_service(name: str, module: str, *, extra_args: Callable[[Layout], list[str]] | None = None,
                   health: Callable[[Layout], bool] = stays_up, start_timeout: float = 30.0,
                   state_dir_arg: bool = True, prepare: Callable[[Layout], None] | None = None,
                   role: str | None = None) -> ServiceSpec:
    """A Python service run as ``python -m <module> <NATS options of role> --state-dir
    <state>/<name>`` (plus ``extra_args(layout)``; ``state_dir_arg=False`` for services without
    local state; ``role``, the NATS user, defaults to ``name``)."""

    def argv(layout: Layout) -> list[str]:
        state = ["--state-dir", str(layout.state_dir / name)] if state_dir_arg else []
        return [sys.executable, "-m", module, *layout.nats_client_args(role or name), *state,
                *(extra_args(layout) if extra_args else [])]

    return ServiceSpec(name, argv, health, prepare=prepare, start_timeout=start_timeout)


def leader_identity_args(service: str) -> Callable[[Layout], list[str]]:
    """``["--id", "<service>-<node>"]``: a replica's identity stays the same across restarts, so a
    leader that was killed takes its own Lease back at once (``shared.leader``: holder == identity)
    instead of waiting for it to lapse."""
    return lambda layout: ["--id", f"{service}-{layout.node_name}"]


def _prepare_nats(layout: Layout) -> None:
    security = apply_nats_security(layout.nats_tls, layout.ca_cert.parent, layout.nats_credentials_dir)
    server = layout.nats_server(security.authorization)
    server.state_dir.mkdir(parents=True, exist_ok=True)
    server.store_dir.mkdir(parents=True, exist_ok=True)
    server.config_path.write_text(server.compute_config())


def _nats_argv(layout: Layout) -> list[str]:
    return [str(find_nats_server_binary()), "-c", str(layout.nats_server().config_path)]


def _api_argv(layout: Layout) -> list[str]:
    return [sys.executable, "-m", "services.virt_api.main", *layout.nats_client_args("virt-api"),
            "--state-dir", str(layout.api_dir), "--port", str(layout.api_port),
            *leader_identity_args("virt-api")(layout)]  # the store maintenance's Lease


def _handler_args(layout: Layout) -> list[str]:
    return ["--node-name", layout.node_name, "--libvirt-uri", layout.libvirt_uri,
            "--image-dir", str(layout.images_dir), "--health-port", str(layout.handler_health_port),
            "--pvc-root", str(layout.pvcs_dir), *SINGLE_MACHINE_TIMING.handler_args()]


def _prepare_handler(layout: Layout) -> None:
    # QEMU runs as libvirt-qemu: it must traverse down to each VMI's overlay and console log
    for directory in (layout.state_dir, layout.handler_dir, layout.images_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(directory.stat().st_mode | 0o755)
    if layout.libvirt_uri == DEFAULT_LIBVIRT_URI:
        apply_libvirt_daemons(layout)


def migration_health_port(layout: Layout) -> int:
    """virt-migration's health (and metrics) port, recorded in ``installation.json``."""
    return layout.migration_health_port


NATS_SERVER = ServiceSpec("nats-server", _nats_argv, is_nats_healthy, prepare=_prepare_nats, start_timeout=20.0)
VIRT_API = ServiceSpec("virt-api", _api_argv, is_api_ready, start_timeout=45.0)
VIRT_CONTROLLER = python_service(
    "virt-controller", "services.virt_controller.main",
    extra_args=lambda layout: [*leader_identity_args("virt-controller")(layout),
                               *health_port_args(lambda lay: lay.controller_health_port)(layout),
                               *SINGLE_MACHINE_TIMING.controller_args()],
    health=healthz_probe(lambda layout: layout.controller_health_port))
VIRT_MIGRATION = python_service(
    "virt-migration", "services.virt_migration.main",
    extra_args=lambda layout: [*leader_identity_args("virt-migration")(layout),
                               *health_port_args(migration_health_port)(layout)],
    health=healthz_probe(migration_health_port))
VIRT_SNAPSHOT = python_service(
    "virt-snapshot", "services.virt_snapshot.main",
    extra_args=lambda layout: ["--storage-dir", str(layout.state_dir), *leader_identity_args("virt-snapshot")(layout),
                               *health_port_args(lambda lay: lay.snapshot_health_port)(layout)],
    health=healthz_probe(lambda layout: layout.snapshot_health_port))
SCHEDULER_BRIDGE = python_service(
    "scheduler-bridge", "services.scheduler_bridge.main", state_dir_arg=False,
    extra_args=lambda layout: [*leader_identity_args("scheduler-bridge")(layout),
                               *health_port_args(lambda lay: lay.bridge_health_port)(layout)],
    health=healthz_probe(lambda layout: layout.bridge_health_port))
VIRT_HANDLER = python_service("virt-handler", "services.virt_handler.main", extra_args=_handler_args,
                              prepare=_prepare_handler,
                              health=healthz_probe(lambda layout: layout.handler_health_port), start_timeout=60.0)

#: Started in this order, stopped in reverse. One entry per process.
SERVICES: list[ServiceSpec] = [NATS_SERVER, VIRT_API, VIRT_CONTROLLER, VIRT_MIGRATION, VIRT_SNAPSHOT,
                               SCHEDULER_BRIDGE, VIRT_HANDLER]


def check_api_port_change(state_dir: Path, api_port: int | None) -> None:
    """Raise ValueError when ``api_port`` differs from the recorded port while that virt-api
    runs: a running virt-api keeps its port, so ``up --api-port`` would wait for a port nobody
    listens on and record a port the kubeconfig does not name. Nothing is written."""
    record = state_dir.resolve() / "installation.json"
    if api_port is None or not record.exists():
        return
    recorded = json.loads(record.read_text()).get("api_port")
    if recorded == api_port:
        return
    pid = read_record(load_layout(state_dir), VIRT_API.name)
    if pid is not None and is_our_process(pid):
        raise ValueError(f"virt-api already runs on port {recorded}; run 'virtctl down' first to move it to {api_port}")
