"""shared.natsserver: a cluster node's routes name each member's own address when the members
are on different hosts, and its own host otherwise (the config text is checked; nothing runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.natsserver import ClusterMembership, NatsServer


def test_routes_on_one_host_use_the_nodes_own_address(tmp_path: Path) -> None:
    node = NatsServer(tmp_path, host="127.0.0.1", cluster=ClusterMembership("c", 7001, (7001, 7002, 7003)))
    assert ("  routes: [nats-route://127.0.0.1:7001, nats-route://127.0.0.1:7002, nats-route://127.0.0.1:7003]"
            in node.compute_config().splitlines())


def test_routes_across_hosts_use_each_members_address(tmp_path: Path) -> None:
    membership = ClusterMembership("c", 6222, (6222, 6222, 6222), route_hosts=("10.0.0.11", "10.0.0.12", "10.0.0.13"))
    config = NatsServer(tmp_path, host="10.0.0.12", port=4222, cluster=membership).compute_config().splitlines()
    assert "  listen: 10.0.0.12:6222" in config
    assert ("  routes: [nats-route://10.0.0.11:6222, nats-route://10.0.0.12:6222, nats-route://10.0.0.13:6222]"
            in config)


def test_command_runs_the_server_on_its_config(tmp_path: Path) -> None:
    argv = NatsServer(tmp_path).command()
    assert Path(argv[0]).name == "nats-server" and argv[1:] == ["-c", str(tmp_path / "nats-server.conf")]


def test_route_hosts_must_match_the_ports() -> None:
    with pytest.raises(ValueError, match="2 route hosts for 3 route ports"):
        ClusterMembership("c", 6222, (6222, 6222, 6222), route_hosts=("10.0.0.11", "10.0.0.12")).route_urls("x")
