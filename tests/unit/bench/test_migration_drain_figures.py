"""B8's figures (bench/migration_drain_figures.py): the concurrency it reports is what decides
whether the bench says a migration limit was exceeded, so it is checked on hand-made timelines."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.migration_drain_figures import (  # noqa: E402
    compute_drain_figures,
    compute_ideal_seconds,
    compute_in_flight_interval,
    compute_peak_concurrency,
    compute_problems,
    compute_timeline,
)

T0 = 1_700_000_000.0


def stamp(seconds: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(T0 + seconds, tz=timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def vmim(vmi: str, source: str, **phases: float) -> dict:
    """A VMIM whose phases were entered at the given seconds after T0 (``phase=seconds``)."""
    last = max(phases, key=phases.get) if phases else ""
    return {"metadata": {"name": f"m-{vmi}", "uid": f"u-{vmi}-{len(phases)}"}, "spec": {"vmiName": vmi},
            "status": {"phase": last, "migrationState": {"sourceNode": source},
                       "phaseTransitionTimestamps": [{"phase": p, "phaseTransitionTimestamp": stamp(s)}
                                                     for p, s in phases.items()]}}


def done(vmi: str, source: str, start: float, end: float) -> dict:
    return vmim(vmi, source, Pending=start - 0.5, Scheduling=start, Scheduled=start + 0.01, Running=start + 0.05,
                Succeeded=end)


@pytest.mark.parametrize("intervals, peak", [
    pytest.param([], 0, id="none"),
    pytest.param([(0, 1), (1, 2), (2, 3)], 1, id="back-to-back-slot-reuse-is-not-overlap"),
    pytest.param([(0, 2), (1, 3), (1.5, 4)], 3, id="three-overlap"),
    pytest.param([(0, 1), (0.999, 2)], 2, id="overlap-by-a-millisecond"),
    pytest.param([(0, math.inf), (5, 6)], 2, id="never-ended-counts-forever"),
])
def test_peak_concurrency(intervals, peak):
    assert compute_peak_concurrency(intervals) == peak


@pytest.mark.parametrize("phases, interval", [
    pytest.param({"Pending": 0}, None, id="never-admitted"),
    pytest.param({"Pending": 0, "Scheduling": 2, "Running": 3, "Succeeded": 4}, (2, 4), id="succeeded"),
    pytest.param({"Pending": 0, "Scheduled": 2, "Failed": 2.5}, (2, 2.5), id="first-running-phase-to-failed"),
    pytest.param({"Pending": 0, "Scheduling": 1}, (1, math.inf), id="still-in-flight"),
])
def test_in_flight_interval(phases, interval):
    got = compute_in_flight_interval(vmim("a", "n0", **phases))
    assert got == (None if interval is None else (pytest.approx(T0 + interval[0]), T0 + interval[1]))


@pytest.mark.parametrize("count, cluster, per_node, nodes, delay, ideal", [
    (50, 5, 2, 1, 1.0, 25.0),   # the anchor's figure
    (50, 25, 2, 1, 1.0, 25.0),  # the per-node limit binds
    (50, 5, 10, 1, 1.0, 10.0),  # the cluster limit binds
    (7, 5, 2, 1, 0.5, 2.0),
])
def test_ideal(count, cluster, per_node, nodes, delay, ideal):
    assert compute_ideal_seconds(count, cluster_limit=cluster, per_node_limit=per_node, drained_nodes=nodes,
                                 delay=delay) == ideal


def result_of(vmims, vmis, *, cluster=5, per_node=2, drain_s=3.0):
    return {**compute_drain_figures(vmims, vmis, drained="n0"), "cluster_limit": cluster, "per_node_limit": per_node,
            "drain_s": drain_s, "timeout_s": 300.0}


def running_on(name, node):
    return {"metadata": {"name": name}, "status": {"phase": "Running", "nodeName": node}}


def test_a_paced_drain_has_no_problems_and_its_figures():
    vmims = [done("a", "n0", 0, 1), done("b", "n0", 0, 1), done("c", "n0", 1, 2), vmim("d", "n0", Pending=0, Failed=0.2),
             done("d", "n0", 2, 3)]
    result = result_of(vmims, [running_on(n, "n1") for n in "abcd"])
    assert (result["peak_cluster"], result["peak_per_source_node"]) == (2, {"n0": 2})
    assert (result["succeeded"], result["failed"], result["wasted_migrations"], result["retried_vmis"]) == (4, 1, 1, 1)
    assert compute_problems(result) == []
    assert compute_timeline(vmims, T0)["last_final_s"] == 3.0


def test_limits_exceeded_and_vmis_left_behind_are_problems():
    vmims = [done("a", "n0", 0, 1), done("b", "n0", 0.5, 1.5), done("c", "n0", 0.6, 2), vmim("d", "n0", Pending=0)]
    vmis = [running_on("a", "n1"), running_on("b", "n1"), running_on("c", "n1"), running_on("d", "n0")]
    problems = compute_problems(result_of(vmims, vmis, cluster=2, per_node=2, drain_s=None))
    assert problems == ["cluster limit exceeded: 3 > 2", "per-node limit exceeded on n0: 3 > 2",
                        "1 VMIs left on the drained node", "1 VMIMs not final",
                        "the drain did not finish within 300 s"]
