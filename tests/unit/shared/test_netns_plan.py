"""The pure network plan of hosts on one machine (shared.netns.compute_network_plan)."""

from __future__ import annotations

import ipaddress

import pytest

from shared import netns


def test_plan_of_three_hosts_names_and_addresses() -> None:
    plan = netns.compute_network_plan("ab12", 3)
    assert plan.subnet.prefixlen == 24 and plan.subnet.subnet_of(netns.SUPERNET)
    base = plan.subnet.network_address
    assert plan.bridge == "kvpyab12-br"
    assert plan.bridge_address == base + 1
    assert [host.name for host in plan.hosts] == ["host1", "host2", "host3"]
    assert [host.netns for host in plan.hosts] == ["kvpy-ab12-h1", "kvpy-ab12-h2", "kvpy-ab12-h3"]
    assert [host.address for host in plan.hosts] == [base + 11, base + 12, base + 13]
    assert [host.bridge_veth for host in plan.hosts] == ["kvpyab12-h1", "kvpyab12-h2", "kvpyab12-h3"]
    assert {host.interface for host in plan.hosts} == {"eth0"}
    assert plan.host("host2").address == base + 12


def test_plan_is_stable_and_depends_on_the_key() -> None:
    assert netns.compute_network_plan("k1", 2) == netns.compute_network_plan("k1", 2)
    subnets = {netns.compute_network_plan(f"k{i}", 1).subnet for i in range(20)}
    assert len(subnets) > 10  # keys spread over the range


def test_longest_names_fit_ifnamsiz() -> None:
    plan = netns.compute_network_plan("zzzzzz", netns.MAX_HOSTS)
    names = [plan.bridge, *(host.bridge_veth for host in plan.hosts)]
    assert max(len(name) for name in names) == 14
    assert plan.hosts[-1].address == plan.subnet.network_address + 109


def test_taken_subnet_is_skipped_and_default_route_ignored() -> None:
    first = netns.compute_network_plan("k1", 1).subnet
    following = ipaddress.IPv4Network((int(first.network_address) + 256, 24))
    if not following.subnet_of(netns.SUPERNET):
        following = ipaddress.IPv4Network("10.213.0.0/24")
    assert netns.compute_network_plan("k1", 1, taken=[ipaddress.IPv4Network("0.0.0.0/0")]).subnet == first
    assert netns.compute_network_plan("k1", 1, taken=[first]).subnet == following
    # a wider route covering the whole range leaves nothing
    with pytest.raises(netns.NetworkError, match="no free /24"):
        netns.compute_network_plan("k1", 1, taken=[ipaddress.IPv4Network("10.0.0.0/8")])


@pytest.mark.parametrize("key", ["", "UPPER", "toolong7", "a-b", "a b"])
def test_bad_key_is_refused(key: str) -> None:
    with pytest.raises(netns.NetworkError, match="network key"):
        netns.compute_network_plan(key, 1)


@pytest.mark.parametrize("count", [0, -1, netns.MAX_HOSTS + 1])
def test_bad_count_is_refused(count: int) -> None:
    with pytest.raises(netns.NetworkError, match="host count"):
        netns.compute_network_plan("k", count)


def test_json_round_trip_and_netns_argv() -> None:
    plan = netns.compute_network_plan("rt", 2)
    assert netns.NetworkPlan.from_json(plan.to_json()) == plan
    assert netns.netns_argv(plan.hosts[1], ["true", "x"]) == ["ip", "netns", "exec", "kvpy-rt-h2", "true", "x"]
