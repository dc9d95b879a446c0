"""``virtctl up --hosts N``: a cluster of N hosts on one machine, each a network namespace.

Owns: the record of such an installation (``<state>/hosts/hosts.json``: network plan, host
UUIDs, libvirt choice, failure timing), the processes of each host as :class:`ServiceSpec` data
(every Python service's command line comes from :func:`compute_service_argv`), bringing them up
in order and taking everything down again, and what ``virtctl status`` shows of them.
Deliberately elsewhere: the network (:mod:`shared.netns`), which process runs where
(:mod:`services.virtctl.host_placement`, pure), a node's private libvirt
(:mod:`services.virtctl.node_libvirt`), starting and stopping one process
(:mod:`services.virtctl.processes`).

Each host ``hostI`` is the namespace of :func:`shared.netns.compute_network_plan` (its own
address on a private bridge) and has ``<state>/hosts/hostI/`` for its state. Every process of a
host runs inside its namespace (``ip netns exec``), so the ports below are the same on every
host and are reached from the machine at the host's address: nats-server (client
:data:`NATS_PORT`, routes :data:`NATS_ROUTE_PORT`, monitoring :data:`NATS_HTTP_PORT`), virt-api
(:data:`API_PORT`), the others' health and metrics (:data:`HEALTH_PORTS`). Each host has its own
libvirtd (started inside the namespace, so its guests and their migration traffic are the
host's) unless ``--libvirt-uri`` names another libvirt for every handler (``test:///default``).
Shared between hosts, as a shared file system would be: the image store, the claims' disks,
virt-api's TLS material and token (``<state>/api``, so both replicas present one certificate
covering every host address and accept one token) and the NATS users' credentials
(``<state>/nats/credentials``). NATS is secured as on one host (TLS for clients and routes from
the installation's CA, one user per service role, no anonymous access); each nats-server has its
own certificate (covering every host address).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.virtctl.host_placement import CONTROL_PLANE, Placement, compute_placement
from services.virtctl.layout import Layout
from services.virtctl.nats_security import apply_nats_security
from services.virtctl.node_libvirt import NodeLibvirt, apply_node_libvirt, apply_stop_node_libvirt
from services.virtctl.processes import ServiceSpec, is_alive, launch, running_record, stop, wait_healthy
from services.virtctl.service_specs import FAILURE_TIMING, is_http_ok
from shared import libvirtd, netns
from shared.natsserver import ClusterMembership, NatsServer, NatsTls, find_nats_server_binary
from shared.node_fencing import FailureTiming

NATS_PORT = 4222
NATS_ROUTE_PORT = 6222
NATS_HTTP_PORT = 8222
API_PORT = 8443
HEALTH_PORTS = {"virt-controller": 8181, "virt-migration": 8182, "virt-snapshot": 8183, "scheduler-bridge": 8184,
                "virt-handler": 8185}
"""Health and metrics port of each service inside every host (virt-api serves both on its API port)."""

MODULES = {"virt-api": "services.virt_api.main", "virt-controller": "services.virt_controller.main",
           "virt-migration": "services.virt_migration.main", "virt-snapshot": "services.virt_snapshot.main",
           "scheduler-bridge": "services.scheduler_bridge.main", "virt-handler": "services.virt_handler.main"}
"""The module each Python service runs as (``python -m``)."""

CLUSTER_NAME = "kubevirt-py"
"""The NATS cluster name, and the kubeconfig's cluster/context name (host1's virt-api)."""

LEADER_ELECTED = ("virt-controller", "virt-migration", "virt-snapshot", "scheduler-bridge")


class HostsError(RuntimeError):
    """``up``/``down`` of hosts cannot go on; the message says why (one line)."""


LIBVIRT_DRIVERS = ("qemu", "test")
"""Drivers a host's own libvirtd serves its handler: QEMU guests, or libvirt's test driver
(simulated guests that a test reads through the host's libvirtd socket)."""


@dataclass(frozen=True)
class HostsRecord:
    """What ``<state>/hosts/hosts.json`` holds: the network ``plan``, each host's libvirt
    ``host_uuids``, the ``libvirt_uri`` every handler uses (None: each host's own libvirtd,
    through its ``libvirt_driver``, one of :data:`LIBVIRT_DRIVERS`) and the ``failure_timing``
    of handlers, controllers and schedulers (default :data:`FAILURE_TIMING`; tests shorten it
    with ``up``'s hidden ``--testing-failure-timing``). The placement follows from the host count."""

    plan: netns.NetworkPlan
    host_uuids: dict[str, str]
    libvirt_uri: str | None
    libvirt_driver: str = "qemu"
    failure_timing: FailureTiming = FAILURE_TIMING

    @property
    def placement(self) -> Placement:
        return compute_placement(len(self.plan.hosts))

    def address(self, host: str) -> str:
        """``host``'s address on the bridge."""
        return str(self.plan.host(host).address)

    def to_json(self) -> dict[str, Any]:
        timing = self.failure_timing
        return {"network": self.plan.to_json(), "hostUUIDs": self.host_uuids, "libvirtURI": self.libvirt_uri,
                "libvirtDriver": self.libvirt_driver,
                "failureTiming": {"heartbeatInterval": timing.heartbeat_interval, "fenceAfter": timing.fence_after,
                                  "heartbeatTimeout": timing.heartbeat_timeout, "fenceMargin": timing.fence_margin}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostsRecord:
        """The record of :meth:`to_json` (a record without the later fields gets their defaults).
        Raises KeyError, TypeError or ValueError for a malformed one."""
        timing = data.get("failureTiming")
        return cls(netns.NetworkPlan.from_json(data["network"]), dict(data["hostUUIDs"]), data.get("libvirtURI"),
                   data.get("libvirtDriver", "qemu"),
                   FAILURE_TIMING if timing is None else FailureTiming(
                       heartbeat_interval=float(timing["heartbeatInterval"]), fence_after=float(timing["fenceAfter"]),
                       heartbeat_timeout=float(timing["heartbeatTimeout"]), fence_margin=float(timing["fenceMargin"])))


# -- the record ----------------------------------------------------------------------------------
def hosts_dir(layout: Layout) -> Path:
    """``<state>/hosts``: the record and one directory per host."""
    return layout.state_dir / "hosts"


def host_dir(layout: Layout, host: str) -> Path:
    """``<state>/hosts/<host>``: the host's NATS data, libvirt state, services' state."""
    return hosts_dir(layout) / host


def handler_dir(layout: Layout, host: str) -> Path:
    """``<state>/hosts/<host>/virt-handler``: ``host``'s virt-handler state (``vmis/<uid>/`` per
    guest: overlay, ISOs, console log)."""
    return host_dir(layout, host) / "virt-handler"


def record_path(layout: Layout) -> Path:
    return hosts_dir(layout) / "hosts.json"


def compute_network_key(state_dir: Path) -> str:
    """The network key of an installation (6 hex digits of its state directory's path), so two
    installations on one machine get separate namespaces and bridges."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]


def load_hosts_record(layout: Layout) -> HostsRecord | None:
    """The recorded hosts installation; None when this state directory has none. Raises
    HostsError for a record that cannot be read."""
    path = record_path(layout)
    if not path.exists():
        return None
    try:
        return HostsRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HostsError(f"cannot read {path}: {err}") from None


def compute_hosts_record(layout: Layout, recorded: HostsRecord | None, count: int | None, libvirt_uri: str | None,
                         taken: list[Any], *, libvirt_driver: str | None = None,
                         failure_timing: FailureTiming | None = None) -> HostsRecord:
    """The record ``up`` works with: the recorded one (``count``, ``libvirt_uri``,
    ``libvirt_driver``, ``failure_timing`` each None or equal), else a new plan of ``count``
    hosts avoiding the ``taken`` networks, with new host UUIDs. Raises HostsError when the
    recorded installation has another count, libvirt or timing (``down`` first), no count is
    known, or the driver is none of :data:`LIBVIRT_DRIVERS`."""
    if libvirt_driver is not None and libvirt_driver not in LIBVIRT_DRIVERS:
        raise HostsError(f"unknown libvirt driver {libvirt_driver!r} (one of {', '.join(LIBVIRT_DRIVERS)})")
    if recorded is not None:
        recorded_count = len(recorded.plan.hosts)
        if count is not None and count != recorded_count:
            raise HostsError(f"this installation has {recorded_count} hosts; run 'virtctl down' first to make {count}")
        if libvirt_uri is not None and libvirt_uri != recorded.libvirt_uri:
            raise HostsError(f"this installation's handlers use {recorded.libvirt_uri or 'a libvirtd per host'}; "
                             "run 'virtctl down' first to change --libvirt-uri")
        if libvirt_driver is not None and libvirt_driver != recorded.libvirt_driver:
            raise HostsError(f"this installation's libvirtds serve the {recorded.libvirt_driver} driver; "
                             "run 'virtctl down' first to change it")
        if failure_timing is not None and failure_timing != recorded.failure_timing:
            raise HostsError("this installation has another failure timing; run 'virtctl down' first to change it")
        return recorded
    if count is None:
        raise HostsError("no hosts recorded here; give --hosts N")
    compute_placement(count)  # ValueError for a bad count, before anything is made
    try:
        plan = netns.compute_network_plan(compute_network_key(layout.state_dir), count, taken)
    except netns.NetworkError as err:
        raise HostsError(str(err)) from None
    return HostsRecord(plan, {host.name: str(uuid.uuid4()) for host in plan.hosts}, libvirt_uri,
                       libvirt_driver or "qemu", failure_timing or FAILURE_TIMING)


def apply_hosts_record(layout: Layout, record: HostsRecord) -> None:
    """Write ``hosts.json`` (before anything is made, so that ``down`` finds what to remove)."""
    path = record_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_json(), indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# -- command lines -------------------------------------------------------------------------------
def compute_nats_urls(record: HostsRecord) -> list[str]:
    """Client URLs of every nats-server of the cluster (TLS only)."""
    return [f"tls://{record.address(host)}:{NATS_PORT}" for host in record.placement.nats_hosts]


def compute_nats_client_args(layout: Layout, record: HostsRecord, role: str) -> list[str]:
    """How a process of ``role`` (a service name, its NATS user) connects: ``--nats`` for every
    server, the role's credentials (shared by the role's replicas, as on one host:
    ``<state>/nats/credentials/<role>.json``) and the installation's CA."""
    urls = [arg for url in compute_nats_urls(record) for arg in ("--nats", url)]
    return [*urls, "--nats-credentials", str(layout.nats_credentials(role)), "--nats-ca", str(layout.ca_cert)]


def handler_libvirt(layout: Layout, record: HostsRecord, host: str) -> NodeLibvirt:
    """``host``'s private libvirt (used unless the record names one libvirt for all)."""
    return NodeLibvirt(host, record.host_uuids[host], host_dir(layout, host))


def handler_uri(layout: Layout, record: HostsRecord, host: str) -> str:
    """The libvirt URI of ``host``'s virt-handler."""
    return record.libvirt_uri or handler_libvirt(layout, record, host).uri(layout, record.libvirt_driver)


def compute_service_argv(layout: Layout, record: HostsRecord, role: str, host: str) -> list[str]:
    """The command line of the Python service ``role`` (a key of :data:`MODULES`) on ``host``:
    NATS (every server of the cluster), the store's replicas, health on the host's address,
    and the service's own arguments (leader identity ``<role>-<host>``; virt-api's listen
    address and certificate names; the handler's node, libvirt, migration address; the
    installation's one failure timing, ``record.failure_timing``, for handlers, controllers and
    the scheduler, whose ``--heartbeat-timeout`` is the controller's). Raises KeyError for an
    unknown role."""
    address = record.address(host)
    argv = [sys.executable, "-m", MODULES[role], *compute_nats_client_args(layout, record, role),
            "--store-replicas", str(record.placement.store_replicas), "--health-host", address]
    if role == "virt-api":
        sans = [arg for other in record.plan.hosts for arg in ("--tls-san", str(other.address))]
        return [*argv, "--state-dir", str(layout.api_dir), "--host", address, "--port", str(API_PORT), *sans,
                "--id", f"{role}-{host}"]  # the store maintenance's Lease: a restarted replica takes it back
    argv += ["--health-port", str(HEALTH_PORTS[role])]
    if role == "virt-handler":
        return [*argv, "--state-dir", str(handler_dir(layout, host)), "--node-name", host,
                "--libvirt-uri", handler_uri(layout, record, host), "--migration-address", address,
                "--image-dir", str(layout.images_dir), "--pvc-root", str(layout.pvcs_dir),
                *record.failure_timing.handler_args()]
    argv += ["--id", f"{role}-{host}"]
    if role == "virt-controller":
        argv += record.failure_timing.controller_args()
    if role == "scheduler-bridge":
        return [*argv, "--heartbeat-timeout", f"{record.failure_timing.heartbeat_timeout:g}"]
    argv += ["--state-dir", str(host_dir(layout, host) / role)]
    if role == "virt-snapshot":
        argv += ["--storage-dir", str(layout.state_dir)]
    return argv


def nats_tls(layout: Layout, host: str) -> NatsTls:
    """``host``'s nats-server certificate and key (``<state>/hosts/<host>/nats/pki``, for every
    host address and 127.0.0.1, from the installation's CA) and that CA."""
    pki = host_dir(layout, host) / "nats" / "pki"
    return NatsTls(cert=pki / "server.crt", key=pki / "server.key", ca=layout.ca_cert)


def nats_server(layout: Layout, record: HostsRecord, host: str, authorization: str | None = None) -> NatsServer:
    """The nats-server of ``host`` as :class:`shared.natsserver.NatsServer` describes it (config
    and paths; it is started by :func:`nats_spec`'s process, not by this object): TLS for
    clients and routes, the users of ``authorization``, everything (monitoring too) on the
    host's address, which only this machine reaches."""
    address = record.address(host)
    nats_hosts = record.placement.nats_hosts
    cluster = None
    if len(nats_hosts) > 1:
        cluster = ClusterMembership(name=CLUSTER_NAME, route_port=NATS_ROUTE_PORT,
                                    route_ports=(NATS_ROUTE_PORT,) * len(nats_hosts),
                                    route_hosts=tuple(record.address(h) for h in nats_hosts))
    return NatsServer(host_dir(layout, host) / "nats", port=NATS_PORT, host=address, http_port=NATS_HTTP_PORT,
                      server_name=f"{CLUSTER_NAME}-{host}", cluster=cluster, authorization=authorization,
                      tls=nats_tls(layout, host), http_host=address)


# -- the processes -------------------------------------------------------------------------------
def _in_host(record: HostsRecord, host: str) -> Callable[[list[str]], list[str]]:
    plan_host = record.plan.host(host)
    return lambda argv: netns.netns_argv(plan_host, argv)


def nats_spec(record: HostsRecord, host: str) -> ServiceSpec:
    """``nats-server-<host>``: runs inside the host, healthy when its ``/healthz`` says so (a
    cluster member only once a meta leader is elected). Before a start: its certificate, the
    users' credentials (kept when they exist) and its config with their authorization."""

    def prepare(layout: Layout) -> None:
        # every host address: a client that learnt a server from the cluster's INFO (an IP) checks
        # it against the name it first dialled (nats-py and the Go client reuse that name)
        names = (*(str(h.address) for h in record.plan.hosts), "127.0.0.1", "localhost")
        security = apply_nats_security(nats_tls(layout, host), layout.ca_cert.parent, layout.nats_credentials_dir,
                                       hosts=names)
        server = nats_server(layout, record, host, security.authorization)
        server.store_dir.mkdir(parents=True, exist_ok=True)
        server.config_path.write_text(server.compute_config())

    def argv(layout: Layout) -> list[str]:
        return [str(find_nats_server_binary()), "-c", str(nats_server(layout, record, host).config_path)]

    url = f"http://{record.address(host)}:{NATS_HTTP_PORT}/healthz"
    return ServiceSpec(f"nats-server-{host}", argv, lambda _layout: is_http_ok(url), prepare=prepare,
                       start_timeout=30.0, wrap=_in_host(record, host))


def _api_ready(record: HostsRecord, host: str) -> Callable[[Layout], bool]:
    def probe(layout: Layout) -> bool:
        if not layout.ca_cert.exists():
            return False
        context = ssl.create_default_context(cafile=str(layout.ca_cert))
        return is_http_ok(f"https://{record.address(host)}:{API_PORT}/readyz", context)

    return probe


def service_spec(record: HostsRecord, role: str, host: str) -> ServiceSpec:
    """``<role>-<host>``: the Python service ``role`` inside ``host`` (command line from
    :func:`compute_service_argv`), with its health probe over the bridge."""

    def argv(layout: Layout) -> list[str]:
        return compute_service_argv(layout, record, role, host)

    def prepare(layout: Layout) -> None:
        directories = [layout.state_dir, hosts_dir(layout), host_dir(layout, host), layout.images_dir]
        if role == "virt-handler":
            directories.append(handler_dir(layout, host))
        for directory in directories:  # QEMU (libvirt-qemu) traverses down to each VMI's files
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(directory.stat().st_mode | 0o755)

    if role == "virt-api":
        health = _api_ready(record, host)
    else:
        url = f"http://{record.address(host)}:{HEALTH_PORTS[role]}/healthz"
        health = lambda _layout: is_http_ok(url)  # noqa: E731 - a probe closure
    timeout = 60.0 if role in ("virt-handler", "virt-api") else 30.0
    return ServiceSpec(f"{role}-{host}", argv, health, prepare=prepare, start_timeout=timeout,
                       wrap=_in_host(record, host))


def compute_specs(record: HostsRecord) -> list[ServiceSpec]:
    """Every process of the installation in start order: nats-servers, control-plane replicas
    (virt-api's first), virt-handlers. Stopped in reverse."""
    placement = record.placement
    return [*(nats_spec(record, host) for host in placement.nats_hosts),
            *(service_spec(record, r.service, r.host) for r in placement.replicas),
            *(service_spec(record, "virt-handler", host) for host in placement.hosts)]


# -- up ------------------------------------------------------------------------------------------
def apply_hosts_up(layout: Layout, count: int | None, libvirt_uri: str | None,
                   echo: Callable[[str], None], *, libvirt_driver: str | None = None,
                   failure_timing: FailureTiming | None = None) -> HostsRecord:
    """Make the hosts and start every process (idempotent: what exists and runs is kept).

    Order: record, network, nats-servers (all launched, then waited for: a cluster forms only
    with its peers), each host's libvirtd, the first virt-api (it makes the shared TLS material
    and token), then every other process launched at once and waited for. On a failure the
    processes this call started are stopped again (newest first) and, when this call made the
    network, the hosts' daemons and the network are removed. ``libvirt_driver`` and
    ``failure_timing``: see :func:`compute_hosts_record`. Raises HostsError (or the failure's
    own error) with a readable message.
    """
    recorded = load_hosts_record(layout)
    taken = netns.read_taken_networks(recorded.plan.bridge if recorded else None)
    try:
        record = compute_hosts_record(layout, recorded, count, libvirt_uri, taken, libvirt_driver=libvirt_driver,
                                      failure_timing=failure_timing)
    except ValueError as err:
        raise HostsError(str(err)) from None
    apply_hosts_record(layout, record)
    made_network = not netns.link_exists(record.plan.bridge)
    netns.apply_network(record.plan)
    if made_network:
        echo(f"{'network':<24} bridge {record.plan.bridge} {record.plan.subnet}, "
             f"{len(record.plan.hosts)} hosts made")
    started: list[ServiceSpec] = []
    try:
        specs = compute_specs(record)
        nats = [spec for spec in specs if spec.name.startswith("nats-server-")]
        _apply_started(layout, nats, started, echo)
        if record.libvirt_uri is None:
            libvirtd.apply_kvm_device_access()
            for host in record.plan.hosts:
                daemons = apply_node_libvirt(layout, handler_libvirt(layout, record, host.name),
                                             netns.netns_argv(host, []))
                echo(f"{'libvirtd-' + host.name:<24} running (pid {daemons.pids['libvirtd']}, "
                     f"host UUID {record.host_uuids[host.name]})")
        rest = specs[len(nats):]
        _apply_started(layout, rest[:1], started, echo)  # the first virt-api
        _apply_started(layout, rest[1:], started, echo)
    except Exception as err:
        stopped = [spec.name for spec in reversed(started) if stop(layout, spec)]
        undone = f" (stopped again: {', '.join(reversed(stopped))})" if stopped else ""
        if made_network:
            _apply_remove_hosts(layout, record, lambda _line: None)
            undone += "; hosts removed"
        raise HostsError(f"{err}{undone}") from None
    return record


def _apply_started(layout: Layout, specs: list[ServiceSpec], started: list[ServiceSpec],
                   echo: Callable[[str], None]) -> None:
    """Launch those of ``specs`` not running (recorded in ``started``), then wait until every
    one is healthy."""
    waiting = []
    for spec in specs:
        record = running_record(layout, spec)
        if record is None:
            record = launch(layout, spec)
            started.append(spec)
            waiting.append((spec, record, "started"))
        else:
            waiting.append((spec, record, "already running"))
    for spec, record, what in waiting:
        wait_healthy(layout, spec, record)
        echo(f"{spec.name:<24} {what} (pid {record.pid})")


# -- down ----------------------------------------------------------------------------------------
def apply_hosts_down(layout: Layout, echo: Callable[[str], None]) -> None:
    """Stop every process (reverse start order), destroy each host's guests and stop its
    libvirtd, then remove the namespaces, veths and bridge of the record. Raises HostsError
    for a record that cannot be read; does nothing without one."""
    record = load_hosts_record(layout)
    if record is None:
        return
    for spec in reversed(compute_specs(record)):
        echo(f"{spec.name:<24} {'stopped' if stop(layout, spec) else 'not running'}")
    _apply_remove_hosts(layout, record, echo)


def _apply_remove_hosts(layout: Layout, record: HostsRecord, echo: Callable[[str], None]) -> None:
    if record.libvirt_uri is None:
        for host in record.plan.hosts:
            if apply_stop_node_libvirt(layout, handler_libvirt(layout, record, host.name), echo):
                echo(f"{'libvirtd-' + host.name:<24} stopped")
    netns.apply_remove_network(record.plan)
    echo(f"{'network':<24} bridge {record.plan.bridge} and {len(record.plan.hosts)} hosts removed")


# -- status --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessStatus:
    """One process of a host: ``service``, ``pid`` (None: not running), ``healthy``, and for a
    leader-elected service whether it leads (None: not known)."""

    service: str
    pid: int | None
    healthy: bool
    leader: bool | None = None


def _leads(address: str, role: str) -> bool | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}:{HEALTH_PORTS[role]}/leader", timeout=1.0) as resp:
            return bool(json.loads(resp.read()).get("leader"))
    except (OSError, ValueError):
        return None


def compute_hosts_status(layout: Layout, record: HostsRecord) -> dict[str, list[ProcessStatus]]:
    """Host name -> the status of each of its processes (in :meth:`Placement.on_host` order)."""
    specs = {spec.name: spec for spec in compute_specs(record)}
    status: dict[str, list[ProcessStatus]] = {}
    for host in record.placement.hosts:
        rows = []
        for service in record.placement.on_host(host):
            spec = specs[f"{service}-{host}"]
            running = running_record(layout, spec)
            if running is None or not is_alive(running.pid):
                rows.append(ProcessStatus(service, None, False))
                continue
            leader = _leads(record.address(host), service) if service in LEADER_ELECTED else None
            rows.append(ProcessStatus(service, running.pid, spec.health(layout), leader))
        status[host] = rows
    return status


def compute_api_urls(record: HostsRecord) -> list[tuple[str, str]]:
    """``(host, https URL)`` of every virt-api replica, host1's first."""
    return [(r.host, f"https://{record.address(r.host)}:{API_PORT}") for r in record.placement.replicas_of("virt-api")]


__all__ = ["API_PORT", "CONTROL_PLANE", "HEALTH_PORTS", "HostsError", "HostsRecord", "ProcessStatus",
           "apply_hosts_down", "apply_hosts_up", "compute_api_urls", "compute_hosts_status", "compute_service_argv",
           "compute_specs", "load_hosts_record"]
