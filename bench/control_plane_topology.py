"""Where ``control_plane_bench`` runs its processes: one host, or three hosts with a NATS cluster.

Topologies:

* ``single`` — the single-host installation: one nats-server (R1) on 127.0.0.1, one process of
  each service in the machine's own network namespace (what the bench always measured);
* ``hosts3`` — the cluster of ``virtctl up --hosts 3`` (issue 12): three hosts as network
  namespaces on a private bridge (:mod:`shared.netns`), a nats-server on each host's address
  joined as one cluster (JetStream R3: the services run with ``--store-replicas 3``),
  virt-controller and scheduler-bridge at two replicas on different hosts (a leader and a hot
  standby, identities ``<service>-<host>``), a virt-handler on every host (node ``host<i>``).
  The driver stays in the root namespace and reaches every node over the bridge.

Owns: the pure placement of processes on hosts (:func:`compute_placements`), the leases and
nodes a ready topology shows (:func:`compute_readiness`), and making and removing a topology's
network and NATS (:func:`apply_topology`, a context manager that removes everything it made on
exit, also on an exception or Ctrl-C). Starting the services is :mod:`bench.control_plane_services`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared import netns
from shared.natsserver import ClusterMembership, NatsServer

TOPOLOGIES = ("single", "hosts3")
SINGLE_NODE = "bench-node"
SINGLE_IDENTITY = "bench"
CONTROLLER_LEASE = ("kubevirt", "virt-controller")
BRIDGE_LEASE = ("kubevirt", "scheduler-bridge")

#: ports every host's nats-server uses on its own address (each host has its own port space)
HOST_CLIENT_PORT, HOST_ROUTE_PORT, HOST_MONITOR_PORT = 4222, 6222, 8222
#: hosts of each leader-elected service's two replicas (different hosts, leaders spread out)
REPLICA_HOSTS = {"virt-controller": ("host1", "host2"), "scheduler-bridge": ("host2", "host3")}


@dataclass(frozen=True)
class Placement:
    """One service process of a topology.

    ``service`` is the program (``virt-controller``, ``scheduler-bridge``, ``virt-handler``);
    ``name`` names the process in reports (``<service>@<host>`` on hosts, else ``service``);
    ``host`` is the host it runs in (None: the root namespace); ``identity`` its leader-election
    ``--id`` (None: not passed); ``node`` the Node a handler registers (None for the others).
    """

    service: str
    name: str
    host: netns.HostPlan | None = None
    identity: str | None = None
    node: str | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run where this process lives (inside its host's namespace, if any)."""
        return netns.netns_argv(self.host, argv) if self.host else argv


def compute_placements(topology: str, plan: netns.NetworkPlan | None = None) -> list[Placement]:
    """The service processes of ``topology`` (``single``: none of them on a host; ``hosts3``: on
    the hosts of ``plan``, which must hold host1..host3). Raises ValueError for an unknown
    topology or a ``hosts3`` without a plan of three hosts."""
    if topology == "single":
        return [Placement("virt-controller", "virt-controller", identity=SINGLE_IDENTITY),
                Placement("scheduler-bridge", "scheduler-bridge"),
                Placement("virt-handler", "virt-handler", node=SINGLE_NODE)]
    if topology != "hosts3":
        raise ValueError(f"unknown topology {topology!r} (one of {', '.join(TOPOLOGIES)})")
    if plan is None or len(plan.hosts) != 3:
        raise ValueError("hosts3 needs a network plan of three hosts")
    placements = [Placement(service, f"{service}@{name}", plan.host(name), identity=f"{service}-{name}")
                  for service, names in REPLICA_HOSTS.items() for name in names]
    placements += [Placement("virt-handler", f"virt-handler@{host.name}", host, node=host.name)
                   for host in plan.hosts]
    return placements


def compute_readiness(topology: str, placements: list[Placement]) -> tuple[dict[tuple[str, str], set[str]], list[str]]:
    """What a started topology shows once ready: ``({lease: identities one of which holds it},
    [Node names])``. On one host only the controller's lease is awaited (a baseline tree's
    scheduler-bridge may predate leader election); on hosts both leader-elected services'."""
    nodes = [p.node for p in placements if p.node]
    leases = {CONTROLLER_LEASE: {p.identity for p in placements if p.service == "virt-controller" and p.identity}}
    if topology == "hosts3":
        leases[BRIDGE_LEASE] = {p.identity for p in placements if p.service == "scheduler-bridge" and p.identity}
    return leases, nodes


class HostNatsServer(NatsServer):
    """A cluster node running inside one host's namespace, listening on the host's address.

    ``ip netns exec`` execs the server, so :attr:`pid` is the server's own (CPU figures, stop)."""

    def __init__(self, host: netns.HostPlan, state_dir: Path, cluster: ClusterMembership) -> None:
        # monitoring on the host's address too: the driver reads it from the root namespace
        super().__init__(state_dir, port=HOST_CLIENT_PORT, host=str(host.address), http_port=HOST_MONITOR_PORT,
                         http_host=str(host.address), server_name=f"bench-{host.name}", cluster=cluster)
        self.host_plan = host

    def command(self) -> list[str]:
        return netns.netns_argv(self.host_plan, super().command())


@dataclass
class Topology:
    """A made topology: its name, NATS nodes (``servers``), client URLs, service placements, and
    the network plan (None on one host)."""

    name: str
    servers: list[NatsServer]
    placements: list[Placement]
    plan: netns.NetworkPlan | None = None
    replicas: int = 1

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def nats_pids(self) -> dict[str, int]:
        """Process name -> pid of each NATS node (``nats-server@<host>`` on hosts)."""
        if self.plan is None:
            return {"nats-server": self.servers[0].pid or 0}
        return {f"nats-server@{host.name}": server.pid or 0 for host, server in zip(self.plan.hosts, self.servers)}


@contextlib.contextmanager
def apply_topology(name: str, state_dir: Path) -> Iterator[Topology]:
    """Make topology ``name`` (network and NATS; the services are the caller's) with its data
    under ``state_dir``, yield it, and on exit stop the NATS nodes and remove the hosts' network
    (namespaces, veths, bridge) whatever happened. ``hosts3`` needs root; raises
    :class:`shared.netns.NetworkError` when ``ip`` fails, RuntimeError when NATS does not come up."""
    with contextlib.ExitStack() as stack:
        if name == "single":
            server = NatsServer(state_dir / "nats")
            stack.callback(server.stop)
            server.start()
            yield Topology(name, [server], compute_placements(name))
            return
        plan = netns.compute_network_plan(uuid.uuid4().hex[:6], 3, taken=netns.read_taken_networks())
        stack.callback(netns.apply_remove_network, plan)
        netns.apply_network(plan)
        addresses = tuple(str(host.address) for host in plan.hosts)
        servers: list[NatsServer] = []
        for host in plan.hosts:
            membership = ClusterMembership(name="bench", route_port=HOST_ROUTE_PORT,
                                           route_ports=(HOST_ROUTE_PORT,) * len(addresses), route_hosts=addresses)
            servers.append(HostNatsServer(host, state_dir / "nats" / host.name, membership))
        for server in servers:
            stack.callback(server.stop)
        for server in servers:
            server.launch()
        for server in servers:  # a node turns healthy once the cluster has a meta leader
            server.wait_ready(30.0)
        yield Topology(name, servers, compute_placements(name, plan), plan=plan, replicas=3)
