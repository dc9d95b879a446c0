"""The figures of B8 (``migration_drain_bench``), pure: from the VMIMs seen during a drain and the
VMIs at its end to concurrency, waste, per-phase times and a verdict.

Times come from each VMIM's ``status.phaseTransitionTimestamps`` (written by virt-migration with
microseconds), not from ``metadata.creationTimestamp`` (whole seconds). A VMIM counts against the
limits from its first phase in KubeVirt's running set (``Scheduling`` ... ``Running``) to its final
phase (``Succeeded``/``Failed``): exactly what virt-migration counts when it admits the next one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

RUNNING_PHASES = ("Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running")
FINAL_PHASES = ("Succeeded", "Failed")
PHASE_ORDER = ("Pending", *RUNNING_PHASES, "Succeeded")


def parse(ts: str) -> float:
    """Epoch seconds of an RFC 3339 time (``...Z`` or with an offset)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def stamps_of(vmim: Mapping[str, Any]) -> dict[str, float]:
    """phase -> epoch seconds of the VMIM's recorded transitions into it."""
    return {s["phase"]: parse(s["phaseTransitionTimestamp"])
            for s in (vmim.get("status") or {}).get("phaseTransitionTimestamps") or []
            if s.get("phase") and s.get("phaseTransitionTimestamp")}


def compute_ideal_seconds(count: int, *, cluster_limit: int, per_node_limit: int, drained_nodes: int,
                          delay: float) -> float:
    """Seconds a perfect drain takes: ``ceil(count / parallel)`` waves of ``delay`` seconds, where
    ``parallel = min(cluster_limit, per_node_limit x drained_nodes)`` (KubeVirt has no inbound limit
    on targets). 50 VMIs, 5/2, one drained node, 1 s -> 25 s."""
    parallel = max(1, min(cluster_limit, per_node_limit * drained_nodes))
    return math.ceil(count / parallel) * delay


def compute_in_flight_interval(vmim: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(start, end)`` epoch seconds while ``vmim`` counted against the limits (end = +inf when it
    has not ended); None when it never left Pending."""
    stamps = stamps_of(vmim)
    starts = [stamps[p] for p in RUNNING_PHASES if p in stamps]
    if not starts:
        return None
    ends = [stamps[p] for p in FINAL_PHASES if p in stamps]
    return min(starts), (min(ends) if ends else math.inf)


def compute_peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """Highest number of overlapping ``[start, end)`` intervals (an end at the same instant as
    another's start does not overlap it: a slot freed and taken in one step)."""
    intervals = list(intervals)
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in points:
        current += step
        peak = max(peak, current)
    return peak


def compute_phase_medians(vmims: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Median seconds the succeeded VMIMs spent in each phase of ``PHASE_ORDER`` (to the next
    recorded one): where a migration slot's time goes."""
    spent: dict[str, list[float]] = {}
    for vmim in vmims:
        stamps = stamps_of(vmim)
        if "Succeeded" not in stamps:
            continue
        present = [p for p in PHASE_ORDER if p in stamps]
        for here, there in zip(present, present[1:]):
            spent.setdefault(here, []).append(stamps[there] - stamps[here])
    return {p: round(statistics.median(spent[p]), 3) for p in PHASE_ORDER if p in spent}


def compute_timeline(vmims: Iterable[Mapping[str, Any]], began: float) -> dict[str, float | None]:
    """Seconds from the drain's start (``began``, epoch seconds) to the first and last VMIM entering
    Pending, the first admission (``Scheduling``) and the last final phase (None: none seen)."""
    pending, admitted, ended = [], [], []
    for vmim in vmims:
        stamps = stamps_of(vmim)
        if "Pending" in stamps:
            pending.append(stamps["Pending"])
        if "Scheduling" in stamps:
            admitted.append(stamps["Scheduling"])
        ended += [stamps[p] for p in FINAL_PHASES if p in stamps]

    def since(values: list[float], pick: Any) -> float | None:
        return round(pick(values) - began, 2) if values else None
    return {"first_pending_s": since(pending, min), "last_pending_s": since(pending, max),
            "first_admitted_s": since(admitted, min), "last_final_s": since(ended, max)}


def source_of(vmim: Mapping[str, Any]) -> str:
    """The VMIM's source node (``status.migrationState.sourceNode``; ``?`` before placement)."""
    state = (vmim.get("status") or {}).get("migrationState") or {}
    return str(state.get("sourceNode") or "?")


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    return sorted(values)[max(0, math.ceil(fraction * len(values)) - 1)]


def compute_drain_figures(vmims: Iterable[Mapping[str, Any]], vmis: Iterable[Mapping[str, Any]], *,
                          drained: str) -> dict[str, Any]:
    """Concurrency, waste and per-migration times from every VMIM seen (latest state per uid) and
    the VMIs after the drain. ``drained``: the drained node's name."""
    vmims = list(vmims)
    vmis = list(vmis)
    per_source: dict[str, list[tuple[float, float]]] = {}
    everything = []
    for vmim in vmims:
        interval = compute_in_flight_interval(vmim)
        if interval is not None:
            everything.append(interval)
            per_source.setdefault(source_of(vmim), []).append(interval)
    phases = [(m.get("status") or {}).get("phase") for m in vmims]
    per_vmi: dict[str, int] = {}
    for vmim in vmims:
        name = (vmim.get("spec") or {}).get("vmiName") or ""
        per_vmi[name] = per_vmi.get(name, 0) + 1
    took = [s["Succeeded"] - s["Pending"] for s in map(stamps_of, vmims) if "Succeeded" in s and "Pending" in s]
    return {
        "vmims": len(vmims),
        "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed"),
        "not_final": sum(1 for p in phases if p not in FINAL_PHASES),
        "retried_vmis": sum(1 for n in per_vmi.values() if n > 1),
        "wasted_migrations": len(vmims) - phases.count("Succeeded"),
        "peak_cluster": compute_peak_concurrency(everything),
        "peak_per_source_node": {node: compute_peak_concurrency(iv) for node, iv in sorted(per_source.items())},
        "left_on_drained_node": sum(1 for v in vmis if (v.get("status") or {}).get("nodeName") == drained),
        "not_running": sum(1 for v in vmis if (v.get("status") or {}).get("phase") != "Running"),
        "migration_p50_s": statistics.median(took) if took else None,
        "migration_p95_s": percentile(took, 0.95),
        "migration_max_s": max(took) if took else None,
        "phase_median_s": compute_phase_medians(vmims),
    }


def compute_problems(result: Mapping[str, Any]) -> list[str]:
    """What makes the run a failure (the bench's exit status): a limit exceeded, VMIs left on the
    drained node or not Running, VMIMs not final, the drain not finished. Slowness is a figure,
    not a failure."""
    problems = []
    if result["peak_cluster"] > result["cluster_limit"]:
        problems.append(f"cluster limit exceeded: {result['peak_cluster']} > {result['cluster_limit']}")
    for node, peak in result["peak_per_source_node"].items():
        if peak > result["per_node_limit"]:
            problems.append(f"per-node limit exceeded on {node}: {peak} > {result['per_node_limit']}")
    if result["left_on_drained_node"]:
        problems.append(f"{result['left_on_drained_node']} VMIs left on the drained node")
    if result["not_running"]:
        problems.append(f"{result['not_running']} VMIs not Running")
    if result["not_final"]:
        problems.append(f"{result['not_final']} VMIMs not final")
    if result.get("drain_s") is None:
        problems.append(f"the drain did not finish within {result['timeout_s']:.0f} s")
    return problems
