"""Hosts on one machine: network namespaces with their own addresses on a private bridge.

Owns: the plan of such a network (:func:`compute_network_plan`, pure: names and addresses only),
making and removing it with ``ip(8)`` (:func:`apply_network`, :func:`apply_remove_network`),
cutting one host off and joining it again (:func:`apply_partition`, :func:`apply_heal`), and the
argv that runs a command inside a host (:func:`netns_argv`).
Deliberately elsewhere: which process runs on which host (``services.virtctl``), starting
processes.

Layout of a plan with key ``k`` and ``count`` hosts: a Linux bridge ``kvpyk-br`` holding the
first address (.1) of a /24 taken from 10.213.0.0/16; host ``i`` (1-based) is the network
namespace ``kvpy-k-h<i>`` with loopback up and one veth whose peer inside the namespace is
``eth0`` at ``.(10+i)/24``; the end on the bridge is ``kvpyk-h<i>``. Partitioning a host sets
that bridge end down (the host keeps its address but reaches nobody, as with a pulled cable).

Facts (ip-link(8), ip-netns(8)): an interface name is at most 15 bytes (``IFNAMSIZ`` - 1);
``ip netns exec NS CMD`` runs CMD in NS's network namespace (and a private mount namespace with
``/sys`` for NS); deleting one end of a veth pair deletes the other; ``ip netns delete`` removes
the name at once but the namespace's interfaces only once no process holds it, so removal
deletes the veth explicitly.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
"""The range host subnets (/24) are taken from."""

HOST_ADDRESS_OFFSET = 10
"""Host ``i`` has the address ``.(HOST_ADDRESS_OFFSET + i)`` of its subnet."""

MAX_HOSTS = 99
"""Most hosts in one plan (two digits in the interface names, addresses below .255)."""

HOST_INTERFACE = "eth0"
"""The name of a host's veth end inside its namespace."""

IFNAMSIZ = 15
"""Longest Linux interface name in bytes (ip-link(8))."""

_KEY = re.compile(r"^[a-z0-9]{1,6}$")


class NetworkError(RuntimeError):
    """A plan cannot be made or an ``ip`` command failed; the message says which and why."""


@dataclass(frozen=True)
class HostPlan:
    """One host of a :class:`NetworkPlan`.

    ``index`` is 1-based; ``name`` is ``host<index>`` (the node name); ``netns`` the namespace;
    ``address`` its IPv4 address on the bridge; ``bridge_veth`` the veth end attached to the
    bridge (in the root namespace); ``interface`` the veth end inside ``netns``.
    """

    index: int
    name: str
    netns: str
    address: ipaddress.IPv4Address
    bridge_veth: str
    interface: str = HOST_INTERFACE


@dataclass(frozen=True)
class NetworkPlan:
    """The whole network of a set of hosts: names and addresses only, nothing made yet.

    ``subnet`` is a /24 inside :data:`SUPERNET`; ``bridge_address`` its first address, held by
    ``bridge`` in the root namespace (the machine itself as seen from the hosts).
    """

    key: str
    bridge: str
    subnet: ipaddress.IPv4Network
    bridge_address: ipaddress.IPv4Address
    hosts: tuple[HostPlan, ...]

    def host(self, name: str) -> HostPlan:
        """The host called ``name`` (``host1``...); raises ``KeyError`` for an unknown name."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def to_json(self) -> dict[str, object]:
        """The plan as JSON-ready data (for a record on disk); :meth:`from_json` reads it back."""
        return {
            "key": self.key,
            "bridge": self.bridge,
            "subnet": str(self.subnet),
            "bridgeAddress": str(self.bridge_address),
            "hosts": [
                {
                    "index": host.index,
                    "name": host.name,
                    "netns": host.netns,
                    "address": str(host.address),
                    "bridgeVeth": host.bridge_veth,
                    "interface": host.interface,
                }
                for host in self.hosts
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> NetworkPlan:
        """The plan :meth:`to_json` wrote; raises ``KeyError``/``ValueError``/``TypeError`` on
        data of another shape."""
        hosts = data["hosts"]
        if not isinstance(hosts, list):
            raise TypeError("hosts is not a list")
        return cls(
            key=str(data["key"]),
            bridge=str(data["bridge"]),
            subnet=ipaddress.IPv4Network(str(data["subnet"])),
            bridge_address=ipaddress.IPv4Address(str(data["bridgeAddress"])),
            hosts=tuple(
                HostPlan(
                    index=int(host["index"]),
                    name=str(host["name"]),
                    netns=str(host["netns"]),
                    address=ipaddress.IPv4Address(str(host["address"])),
                    bridge_veth=str(host["bridgeVeth"]),
                    interface=str(host["interface"]),
                )
                for host in hosts
            ),
        )


def compute_subnet(key: str, taken: Iterable[ipaddress.IPv4Network] = ()) -> ipaddress.IPv4Network:
    """The /24 of :data:`SUPERNET` for ``key``: the one its SHA-256 picks, or the next free one
    (wrapping around) when a network in ``taken`` overlaps it.

    ``taken`` are the networks already routed on this machine (a default route, prefix 0, never
    counts). Raises :class:`NetworkError` when every /24 of the range is taken.
    """
    blocking = [network for network in taken if network.prefixlen > 0]
    subnets = list(SUPERNET.subnets(new_prefix=24))
    first = hashlib.sha256(key.encode()).digest()[0] % len(subnets)
    for offset in range(len(subnets)):
        candidate = subnets[(first + offset) % len(subnets)]
        if not any(candidate.overlaps(network) for network in blocking):
            return candidate
    raise NetworkError(f"no free /24 left in {SUPERNET}")


def compute_network_plan(
    key: str, count: int, taken: Iterable[ipaddress.IPv4Network] = ()
) -> NetworkPlan:
    """The network of ``count`` hosts named after ``key`` (1-6 of ``a-z0-9``).

    ``taken``: networks routed on this machine that the subnet must avoid (see
    :func:`read_taken_networks`). Same key, count and taken networks give the same plan. Raises
    :class:`NetworkError` for a bad key or a count outside 1..:data:`MAX_HOSTS`.
    """
    if not _KEY.match(key):
        raise NetworkError(f"network key {key!r} is not 1-6 characters of a-z0-9")
    if not 1 <= count <= MAX_HOSTS:
        raise NetworkError(f"host count {count} is outside 1..{MAX_HOSTS}")
    subnet = compute_subnet(key, taken)
    hosts = tuple(
        HostPlan(
            index=index,
            name=f"host{index}",
            netns=f"kvpy-{key}-h{index}",
            address=subnet.network_address + HOST_ADDRESS_OFFSET + index,
            bridge_veth=f"kvpy{key}-h{index}",
        )
        for index in range(1, count + 1)
    )
    plan = NetworkPlan(
        key=key, bridge=f"kvpy{key}-br", subnet=subnet, bridge_address=subnet.network_address + 1, hosts=hosts
    )
    for name in (plan.bridge, *(host.bridge_veth for host in hosts)):
        if len(name.encode()) > IFNAMSIZ:  # unreachable with the key rule; kept as the invariant
            raise NetworkError(f"interface name {name!r} is longer than {IFNAMSIZ} bytes")
    return plan


def netns_argv(host: HostPlan, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``host``'s network namespace: ``["ip", "netns", "exec", ns, *argv]``."""
    return ["ip", "netns", "exec", host.netns, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


def read_taken_networks(except_device: str | None = None) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks routed in the root namespace (``ip -j route``), leaving out the routes
    of ``except_device`` (a plan's own bridge, so that planning again gives the same subnet) and
    the default route. Raises :class:`NetworkError` when ``ip`` fails."""
    routes = json.loads(_ip("-j", "route", "show", "table", "all").stdout or "[]")
    networks = []
    for route in routes:
        destination = route.get("dst", "")
        if destination == "default" or route.get("dev") == except_device:
            continue
        try:
            networks.append(ipaddress.IPv4Network(destination, strict=False))
        except ValueError:  # a non-IPv4 destination (multicast names, etc.)
            continue
    return networks


def link_exists(name: str, netns: str | None = None) -> bool:
    """True when the interface ``name`` exists (in ``netns``, else in the root namespace)."""
    prefix = ["-n", netns] if netns else []
    return _ip(*prefix, "link", "show", "dev", name, check=False).returncode == 0


def list_netns() -> set[str]:
    """The names of the network namespaces ``ip netns list`` shows."""
    return {line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()}


def _has_address(device: str, address: str, netns: str | None = None) -> bool:
    prefix = ["-n", netns] if netns else []
    shown = json.loads(_ip(*prefix, "-j", "addr", "show", "dev", device).stdout or "[]")
    return any(info.get("local") == address for link in shown for info in link.get("addr_info", []))


def apply_network(plan: NetworkPlan) -> None:
    """Make what ``plan`` names (bridge, namespaces, veths, addresses, links up); whatever already
    exists is kept, so a second call changes nothing. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
    Raises :class:`NetworkError` when an ``ip`` command fails."""
    prefixlen = str(plan.subnet.prefixlen)
    if not link_exists(plan.bridge):
        _ip("link", "add", "name", plan.bridge, "type", "bridge")
    if not _has_address(plan.bridge, str(plan.bridge_address)):
        _ip("addr", "add", f"{plan.bridge_address}/{prefixlen}", "dev", plan.bridge)
    _ip("link", "set", "dev", plan.bridge, "up")
    existing = list_netns()
    for host in plan.hosts:
        if host.netns not in existing:
            _ip("netns", "add", host.netns)
        _ip("-n", host.netns, "link", "set", "dev", "lo", "up")
        if not link_exists(host.bridge_veth):
            if link_exists(host.interface, host.netns):  # a peer left from an interrupted apply
                _ip("-n", host.netns, "link", "del", "dev", host.interface)
            _ip("link", "add", "name", host.bridge_veth, "type", "veth",
                "peer", "name", host.interface, "netns", host.netns)
        _ip("link", "set", "dev", host.bridge_veth, "master", plan.bridge)
        _ip("link", "set", "dev", host.bridge_veth, "up")
        if not _has_address(host.interface, str(host.address), host.netns):
            _ip("-n", host.netns, "addr", "add", f"{host.address}/{prefixlen}", "dev", host.interface)
        _ip("-n", host.netns, "link", "set", "dev", host.interface, "up")


def apply_remove_network(plan: NetworkPlan) -> None:
    """Remove what ``plan`` names (veths, namespaces, bridge) and nothing else; what is already
    gone is skipped, so a second call changes nothing. Stop the processes inside the hosts
    first: a namespace a process still holds lives on (unnamed) until that process ends.
    Raises :class:`NetworkError` when an ``ip`` command fails."""
    existing = list_netns()
    for host in plan.hosts:
        if link_exists(host.bridge_veth):
            _ip("link", "del", "dev", host.bridge_veth)
        if host.netns in existing:
            _ip("netns", "delete", host.netns)
    if link_exists(plan.bridge):
        _ip("link", "del", "dev", plan.bridge)


def apply_partition(plan: NetworkPlan, host: str) -> None:
    """Cut host ``host`` (``host2``...) off: its veth end on the bridge goes down, so it reaches
    neither the other hosts nor the machine. Raises ``KeyError`` for an unknown host,
    :class:`NetworkError` when ``ip`` fails."""
    _ip("link", "set", "dev", plan.host(host).bridge_veth, "down")


def apply_heal(plan: NetworkPlan, host: str) -> None:
    """Join host ``host`` again after :func:`apply_partition` (its bridge end up). Raises
    ``KeyError`` for an unknown host, :class:`NetworkError` when ``ip`` fails."""
    _ip("link", "set", "dev", plan.host(host).bridge_veth, "up")
