"""B1 on one host and on three (bench/control_plane_bench.py --topology): where each process
runs, what readiness waits for, CPU summed over replicas, the hosts3/single table's rows, and
the command line; checked on a network plan and hand-made results (nothing is started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.control_plane_bench import compute_scenarios, compute_service_cpu, parse_args  # noqa: E402
from bench.control_plane_report import compute_comparison_rows  # noqa: E402
from bench.control_plane_topology import (BRIDGE_LEASE, CONTROLLER_LEASE, compute_placements,  # noqa: E402
                                          compute_readiness)
from shared.netns import compute_network_plan  # noqa: E402

PLAN = compute_network_plan("tst", 3)


def test_single_host_runs_one_process_per_service_in_the_root_namespace():
    placements = compute_placements("single")
    assert [(p.name, p.host, p.identity, p.node) for p in placements] == [
        ("virt-controller", None, "bench", None), ("scheduler-bridge", None, None, None),
        ("virt-handler", None, None, "bench-node")]
    assert placements[0].wrap(["python", "-m", "x"]) == ["python", "-m", "x"]


def test_three_hosts_spread_two_replicas_and_a_handler_per_host():
    placements = compute_placements("hosts3", PLAN)
    assert [(p.name, p.host.name if p.host else None, p.identity, p.node) for p in placements] == [
        ("virt-controller@host1", "host1", "virt-controller-host1", None),
        ("virt-controller@host2", "host2", "virt-controller-host2", None),
        ("scheduler-bridge@host2", "host2", "scheduler-bridge-host2", None),
        ("scheduler-bridge@host3", "host3", "scheduler-bridge-host3", None),
        ("virt-handler@host1", "host1", None, "host1"),
        ("virt-handler@host2", "host2", None, "host2"),
        ("virt-handler@host3", "host3", None, "host3"),
    ]
    assert placements[1].wrap(["python"]) == ["ip", "netns", "exec", "kvpy-tst-h2", "python"]


@pytest.mark.parametrize("topology, plan, message", [
    pytest.param("hosts5", None, "unknown topology 'hosts5'", id="unknown"),
    pytest.param("hosts3", None, "three hosts", id="no-plan"),
    pytest.param("hosts3", compute_network_plan("tst", 2), "three hosts", id="two-hosts"),
])
def test_bad_topology_is_refused(topology, plan, message):
    with pytest.raises(ValueError, match=message):
        compute_placements(topology, plan)


def test_readiness_waits_for_both_leases_and_every_node_on_hosts():
    leases, nodes = compute_readiness("hosts3", compute_placements("hosts3", PLAN))
    assert leases == {CONTROLLER_LEASE: {"virt-controller-host1", "virt-controller-host2"},
                      BRIDGE_LEASE: {"scheduler-bridge-host2", "scheduler-bridge-host3"}}
    assert nodes == ["host1", "host2", "host3"]
    assert compute_readiness("single", compute_placements("single")) == ({CONTROLLER_LEASE: {"bench"}}, ["bench-node"])


def test_service_cpu_sums_the_replicas():
    assert compute_service_cpu({"virt-controller@host1": 0.3, "virt-controller@host2": 0.75, "virt-handler@host1": 1.0,
                                "nats-server": 0.5}) == {"virt-controller": 1.05, "virt-handler": 1.0,
                                                          "nats-server": 0.5}


def _result(topology: str, scale: float) -> dict:
    return {"topology": topology, "running_per_s": 100 / scale, "p50_s": 0.01 * scale, "p95_s": 0.02 * scale,
            "cpu_ms_per_vmi": {"virt-controller": 1.0 * scale, "nats-server": 2.0 * scale},
            "vmi_writes_per_vmi": 4.0, "bus_msgs_per_vmi": 9.0,
            **({"route_msgs_per_vmi": 50.0, "route_kib_per_vmi": 40.0} if topology == "hosts3" else {})}


def test_comparison_rows_are_medians_per_side():
    single = [_result("single", 1.0), _result("single", 3.0), _result("single", 2.0)]
    rows = compute_comparison_rows(single, [_result("hosts3", 4.0)])
    assert rows == [
        ("VMIs/s (Running throughput)", 50.0, 25.0),
        ("create->Running p50 ms", 20.0, 40.0),
        ("create->Running p95 ms", 40.0, 80.0),
        ("CPU ms/VMI virt-controller", 2.0, 4.0),
        ("CPU ms/VMI nats-server", 4.0, 8.0),
        ("CPU ms/VMI total", 6.0, 12.0),
        ("store writes per VMI", 4.0, 4.0),
        ("bus messages per VMI", 9.0, 9.0),
        ("NATS route messages per VMI", 0.0, 50.0),
        ("NATS route KiB per VMI", 0.0, 40.0),
    ]


def test_command_line_defaults_and_scenarios():
    args = parse_args([])
    assert (args.topology, args.count, args.paced_count, args.burst_count) == ("single", 0, 100, 1000)
    assert compute_scenarios(parse_args(["--topology", "both", "--paced-count", "200", "--burst-count", "500"])) == [
        (200, 0.1, "paced"), (500, 0.0, "burst")]
    assert compute_scenarios(parse_args(["--count", "30", "--interval", "0"])) == [(30, 0.0, "burst")]


@pytest.mark.parametrize("argv", [
    pytest.param(["--topology", "hosts3", "--agents", "standin"], id="standin-on-hosts"),
    pytest.param(["--topology", "hosts4"], id="unknown-topology"),
    pytest.param(["--burst-count", "0"], id="empty-scenario"),
])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "usage: bench/control_plane_bench.py" in capsys.readouterr().err

