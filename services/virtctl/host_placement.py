"""Which process of ``virtctl up --hosts N`` runs on which host (pure: a count in, a plan out).

Rules (issue "cluster deployment"; KubeVirt runs two virt-api and two virt-controller pods, a
virt-handler per node):

- hosts are ``host1..hostN``;
- nats-server on hosts ``1..min(3, N)``, one cluster (JetStream R3 with three servers: RAFT
  keeps serving with one server lost), so the store's replicas are that many;
- every control-plane service at two replicas on different hosts (one when N is 1): service
  ``i`` of :data:`CONTROL_PLANE` on hosts ``i mod N + 1`` and ``(i + 1) mod N + 1``, so virt-api
  is on host1 and host2 (the two kubeconfig contexts) and the others spread round the hosts;
- each replica's identity is ``<service>-<host>``: stable across restarts, so a restarted leader
  takes its own lease back at once;
- a virt-handler on every host, its node named after the host.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL_PLANE = ("virt-api", "virt-controller", "virt-migration", "virt-snapshot", "scheduler-bridge")
"""The control-plane services, in start order (virt-api first: it makes the shared TLS material)."""

MAX_NATS_SERVERS = 3
"""nats-servers of a cluster: three tolerate the loss of one (RAFT majority)."""

REPLICAS = 2
"""Replicas of each control-plane service (on different hosts)."""


@dataclass(frozen=True)
class Replica:
    """One control-plane process: ``service`` (a name of :data:`CONTROL_PLANE`) on ``host``."""

    service: str
    host: str

    @property
    def identity(self) -> str:
        """The replica's stable identity (``--id``, Lease holder): ``<service>-<host>``."""
        return f"{self.service}-{self.host}"


@dataclass(frozen=True)
class Placement:
    """The processes of ``count`` hosts: ``hosts`` names, ``nats_hosts`` (running nats-server),
    ``replicas`` (control plane, in start order) and ``store_replicas`` (JetStream replicas of
    buckets and streams)."""

    hosts: tuple[str, ...]
    nats_hosts: tuple[str, ...]
    replicas: tuple[Replica, ...]
    store_replicas: int

    def replicas_of(self, service: str) -> list[Replica]:
        """The replicas of ``service`` (empty for an unknown name)."""
        return [replica for replica in self.replicas if replica.service == service]

    def on_host(self, host: str) -> list[str]:
        """What runs on ``host``: ``nats-server`` if any, its control-plane services, then
        ``virt-handler``."""
        services = ["nats-server"] if host in self.nats_hosts else []
        return [*services, *(r.service for r in self.replicas if r.host == host), "virt-handler"]


def compute_host_names(count: int) -> tuple[str, ...]:
    """``host1..host<count>``."""
    return tuple(f"host{index}" for index in range(1, count + 1))


def compute_placement(count: int) -> Placement:
    """The placement for ``count`` hosts (see the module docstring). Raises ValueError for a
    count below 1."""
    if count < 1:
        raise ValueError(f"--hosts must be at least 1 (got {count})")
    hosts = compute_host_names(count)
    nats_hosts = hosts[:MAX_NATS_SERVERS]
    per_service = min(REPLICAS, count)
    replicas = tuple(
        Replica(service, hosts[(index + offset) % count])
        for index, service in enumerate(CONTROL_PLANE)
        for offset in range(per_service)
    )
    return Placement(hosts=hosts, nats_hosts=nats_hosts, replicas=replicas, store_replicas=len(nats_hosts))
