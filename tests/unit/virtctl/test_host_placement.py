"""The placement of ``virtctl up --hosts N`` (services.virtctl.host_placement, pure)."""

from __future__ import annotations

import pytest

from services.virtctl.host_placement import CONTROL_PLANE, Replica, compute_placement


def test_three_hosts() -> None:
    placement = compute_placement(3)
    assert placement.hosts == ("host1", "host2", "host3")
    assert placement.nats_hosts == ("host1", "host2", "host3") and placement.store_replicas == 3
    assert {service: [r.host for r in placement.replicas_of(service)] for service in CONTROL_PLANE} == {
        "virt-api": ["host1", "host2"],
        "virt-controller": ["host2", "host3"],
        "virt-migration": ["host3", "host1"],
        "virt-snapshot": ["host1", "host2"],
        "scheduler-bridge": ["host2", "host3"],
    }
    assert placement.on_host("host1") == ["nats-server", "virt-api", "virt-migration", "virt-snapshot",
                                          "virt-handler"]
    assert Replica("virt-controller", "host3").identity == "virt-controller-host3"


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_replicas_of_a_service_are_on_different_hosts(count: int) -> None:
    placement = compute_placement(count)
    for service in CONTROL_PLANE:
        hosts = [r.host for r in placement.replicas_of(service)]
        assert len(hosts) == 2 and len(set(hosts)) == 2
    assert placement.nats_hosts == placement.hosts[:3]
    assert placement.store_replicas == min(3, count)
    assert len({r.identity for r in placement.replicas}) == len(placement.replicas)


def test_one_host_runs_one_of_everything() -> None:
    placement = compute_placement(1)
    assert [r.identity for r in placement.replicas] == [f"{s}-host1" for s in CONTROL_PLANE]
    assert placement.nats_hosts == ("host1",) and placement.store_replicas == 1


def test_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="--hosts must be at least 1"):
        compute_placement(0)
