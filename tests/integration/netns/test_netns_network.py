"""Real network namespaces on a private bridge (shared.netns): three hosts reach each other over
the bridge, a partitioned host is cut off, healing joins it again, removal leaves nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from shared import netns

PORT = 7411

LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    connection, peer = server.accept()
    connection.sendall(("hello from " + sys.argv[1] + " to " + peer[0]).encode())
    connection.close()
"""

CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as connection:
    print(connection.recv(200).decode())
"""


@pytest.fixture
def plan() -> Iterator[netns.NetworkPlan]:
    """A fresh 3-host plan applied for this test; removed (and checked gone) afterwards."""
    network = netns.compute_network_plan(uuid.uuid4().hex[:6], 3, taken=netns.read_taken_networks())
    try:
        netns.apply_network(network)
        yield network
    finally:
        netns.apply_remove_network(network)


def _connect(host: netns.HostPlan, address: str, timeout: float = 2.0) -> subprocess.CompletedProcess[str]:
    argv = netns.netns_argv(host, [sys.executable, "-c", CONNECT, address, str(PORT), str(timeout)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.fixture
def listeners(plan: netns.NetworkPlan) -> Iterator[None]:
    """A TCP server inside every host, bound to the host's bridge address."""
    processes = []
    try:
        for host in plan.hosts:
            process = subprocess.Popen(
                netns.netns_argv(host, [sys.executable, "-c", LISTENER, str(host.address), str(PORT)]),
                stdout=subprocess.PIPE, text=True,
            )
            processes.append(process)
            assert process.stdout is not None and process.stdout.readline().strip() == "listening"
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def _reaches(client: netns.HostPlan, server: netns.HostPlan) -> bool:
    result = _connect(client, str(server.address), timeout=1.0)
    if result.returncode == 0:
        assert result.stdout.strip() == f"hello from {server.address} to {client.address}"
        return True
    assert "timed out" in result.stderr or "unreachable" in result.stderr.lower(), result.stderr
    return False


def test_hosts_reach_each_other_partition_and_heal(plan: netns.NetworkPlan, listeners: None) -> None:
    host1, host2, host3 = plan.hosts
    pairs = [(client, server) for client in plan.hosts for server in plan.hosts if client != server]
    assert all(_reaches(client, server) for client, server in pairs)
    # each listener is bound to its host's bridge address, which the root namespace does not have
    assert str(host3.address) not in subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout

    netns.apply_partition(plan, "host3")
    assert not _reaches(host1, host3)
    assert not _reaches(host3, host2)
    assert _reaches(host1, host2) and _reaches(host2, host1)

    netns.apply_heal(plan, "host3")
    assert all(_reaches(client, server) for client, server in pairs)


def test_apply_is_idempotent_and_removal_leaves_nothing() -> None:
    network = netns.compute_network_plan(uuid.uuid4().hex[:6], 3, taken=netns.read_taken_networks())
    try:
        netns.apply_network(network)
        netns.apply_network(network)  # a second apply keeps what exists
        assert {host.netns for host in network.hosts} <= netns.list_netns()
        addresses = subprocess.run(["ip", "-4", "-n", network.hosts[0].netns, "-br", "addr", "show", "dev", "eth0"],
                                   capture_output=True, text=True, check=True).stdout
        assert addresses.split()[2:] == [f"{network.hosts[0].address}/24"]
        loopback = subprocess.run(["ip", "-n", network.hosts[0].netns, "-br", "link", "show", "dev", "lo"],
                                  capture_output=True, text=True, check=True).stdout
        assert "UP" in loopback
        # planning again with the plan's own bridge routed gives the same subnet
        again = netns.compute_network_plan(network.key, 3, taken=netns.read_taken_networks(network.bridge))
        assert again == network
    finally:
        netns.apply_remove_network(network)
    netns.apply_remove_network(network)  # a second removal finds nothing to do
    assert not {host.netns for host in network.hosts} & netns.list_netns()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert f"kvpy{network.key}" not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert str(network.subnet) not in routes
