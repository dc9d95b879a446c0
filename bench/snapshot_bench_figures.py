"""B9's figures (bench/snapshot_bench.py): the ratios API/floor and the printed report.

Pure functions of the result dict the bench builds:
``{"count", "volume_mib", "floor": {"online"|"offline"|"restore_to_running": {"samples", "summary"},
"fill_s", "load"}, "api": {"snapshot"|"restore": {"samples", "summary"}, "indications", "load"}}``
where each summary maps a figure (``total_s``, ...) to ``{"n", "p50", "p95", "min", "max", ...}``
(``bench.migration_bench.summarize``).
"""

from __future__ import annotations

# (name, API measurement, floor measurement) of each ratio, all on ``total_s``
RATIOS = (
    ("snapshot_online", "snapshot", "online"),
    ("restore_to_running", "restore", "restore_to_running"),
    ("restore_vs_copy", "restore", "offline"),
)
LABELS = {
    "online": "floor: freeze + backup-begin + thaw, until the copy is complete",
    "offline": "floor: qemu-img convert (offline copy)",
    "restore_to_running": "floor: qemu-img convert + domain start (restore to running)",
    "snapshot": "API: VirtualMachineSnapshot create -> readyToUse",
    "restore": "API: VirtualMachineRestore (new VM) create -> VMI Running",
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _stat(result: dict, part: str, measurement: str, which: str, figure: str = "total_s") -> float | None:
    summary = (((result.get(part) or {}).get(measurement) or {}).get("summary") or {})
    return (summary.get(figure) or {}).get(which)


def compute_ratios(result: dict) -> dict[str, dict[str, float | None]]:
    """API/floor ratios of ``total_s`` (p50 and p95) for each pair of :data:`RATIOS` whose two
    measurements are in ``result``; ``{}`` when a part is missing."""
    ratios = {}
    for name, api, floor in RATIOS:
        if _stat(result, "api", api, "p50") is None or _stat(result, "floor", floor, "p50") is None:
            continue
        ratios[name] = {which: _ratio(_stat(result, "api", api, which), _stat(result, "floor", floor, which))
                        for which in ("p50", "p95")}
    return ratios


def compute_rate(volume_mib: int, seconds: float | None) -> float | None:
    """MiB/s of a copy of ``volume_mib`` MiB that took ``seconds`` (None when unknown or 0)."""
    return round(volume_mib / seconds, 1) if seconds else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(result: dict) -> list[str]:
    """The report's lines: one per measurement (p50/p95/min/max seconds and MiB/s at p50),
    the details of the floor's online copy, the load per part, the ratios."""
    volume = result["volume_mib"]
    lines = [f"B9 snapshot and restore of a {volume} MiB qcow2 volume (written in full), demo guest under "
             f"{result.get('accel', 'TCG')}, {result['count']} samples each (+1 warm-up)",
             f"{'measurement':<62} {'p50 s':>7} {'p95 s':>7} {'min s':>7} {'max s':>7} {'MiB/s p50':>9}"]
    for part, measurements in (("floor", ("online", "offline", "restore_to_running")),
                               ("api", ("snapshot", "restore"))):
        if not result.get(part):
            continue
        for m in measurements:
            if _stat(result, part, m, "n") is None:
                continue
            p50 = _stat(result, part, m, "p50")
            lines.append(f"{LABELS[m]:<62} {_fmt(p50):>7} {_fmt(_stat(result, part, m, 'p95')):>7} "
                         f"{_fmt(_stat(result, part, m, 'min')):>7} {_fmt(_stat(result, part, m, 'max')):>7} "
                         f"{_fmt(compute_rate(volume, p50), 1):>9}")
        if part == "floor" and _stat(result, "floor", "online", "n") is not None:
            lines.append(f"{'':<4}online copy p50: freeze {_fmt(_stat(result, 'floor', 'online', 'p50', 'freeze_s'), 3)}"
                         f" s, guest frozen {_fmt(_stat(result, 'floor', 'online', 'p50', 'frozen_s'), 3)} s, "
                         f"backup job {_fmt(_stat(result, 'floor', 'online', 'p50', 'copy_s'))} s")
        if part == "api":
            if result["api"].get("indications"):
                lines.append(f"{'':<4}snapshot indications: {', '.join(result['api']['indications'])}")
            if _stat(result, "api", "snapshot", "p50", "ready_s") is not None:
                lines.append(f"{'':<4}snapshot p50 from the object's own stamps (creation -> Ready condition): "
                             f"{_fmt(_stat(result, 'api', 'snapshot', 'p50', 'ready_s'))} s; restore p50 create -> "
                             f"complete {_fmt(_stat(result, 'api', 'restore', 'p50', 'complete_s'))} s")
        if result[part].get("load"):
            lines.append(f"{'':<4}load during {part}: {result[part]['load']}")
    for name, ratio in (result.get("ratios") or compute_ratios(result)).items():
        api, floor = next((a, f) for n, a, f in RATIOS if n == name)
        lines.append(f"ratio {name} ({api} / {floor}): p50 {_fmt(ratio['p50'])}, p95 {_fmt(ratio['p95'])}")
    return lines


def report(result: dict) -> None:
    """Print :func:`format_report`."""
    print("\n" + "\n".join(format_report(result)))
