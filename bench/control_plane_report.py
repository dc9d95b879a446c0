"""What ``control_plane_bench`` prints: one run's figures, and old against new.

Every figure is printed with the machine's load average, because a loaded machine (other work
sharing its CPUs) lowers throughput and raises latency for reasons no tree is responsible for:
compare trees only within one run on one machine.
"""

from __future__ import annotations

import os
import statistics


def report(result: dict) -> None:
    """Print one run's figures (the dict ``control_plane_bench.scenario`` returns)."""
    print(f"\n== {result['label']}: {result['count']} VMIs, interval {result['interval_s']} s, "
          f"{result.get('topology', 'single')} ==")
    print(f"create->Running p50 {result['p50_s']*1000:.0f} ms  p95 {result['p95_s']*1000:.0f} ms  "
          f"p99 {result['p99_s']*1000:.0f} ms  max {result['max_s']*1000:.0f} ms")
    print(f"Running throughput {result['running_per_s']:.1f} VMIs/s  (all Running after "
          f"{result['all_running_wall_s']:.2f} s, creates took {result['create_wall_s']:.2f} s)")
    print(f"store writes per VMI {result['vmi_writes_per_vmi']:.2f} (VMI bucket; incl. the driver's create)  "
          f"heartbeat/lease writes {result['heartbeat_writes']}")
    print(f"bus messages per VMI {result['bus_msgs_per_vmi']:.1f} (nats-server in_msgs from clients, all nodes)")
    if result.get("route_msgs_per_vmi"):
        print(f"between NATS nodes per VMI {result['route_msgs_per_vmi']:.1f} messages, "
              f"{result['route_kib_per_vmi']:.1f} KiB (routes: JetStream replication and forwarded messages)")
    print("CPU s  " + "  ".join(f"{k} {v}" for k, v in result.get("cpu_s_by_process", result["cpu_s"]).items()))
    print("CPU ms per VMI (all replicas)  " + "  ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms_per_vmi"].items()))
    print("peak RSS MiB  " + "  ".join(f"{k} {v}" for k, v in result["peak_rss_mib"].items()))
    print("load average (1/5/15 min) when all were Running: " + " ".join(str(x) for x in result["loadavg"]))
    if result["delete_all_s"] is not None:
        print(f"delete all -> gone {result['delete_all_s']:.2f} s (deletes sent in {result['deletes_sent_s']:.2f} s)")
    if result["interval_s"] > 0:
        print(f"ratio p95 / 1 s goal = {result['p95_s'] / 1.0:.3f}   p95 / KubeVirt CI p95 38 s = "
              f"{result['p95_s'] / 38:.4f}")
    else:
        print(f"ratio burst throughput / 50 VMIs/s goal = {result['running_per_s'] / 50:.2f}")
    print(f"ratio writes per VMI / 6 goal = {result['vmi_writes_per_vmi'] / 6:.2f}   "
          f"/ KubeVirt ~8.5 = {result['vmi_writes_per_vmi'] / 8.5:.2f}")


def compute_comparison_rows(old: list[dict], new: list[dict]) -> list[tuple[str, float, float]]:
    """``(figure, old, new)`` rows: the median of each figure over the runs of each side (CPU per
    service sums its replicas; ``total`` is every process, NATS included)."""
    def median(figure) -> tuple[float, float]:
        return statistics.median(figure(r) for r in old), statistics.median(figure(r) for r in new)

    rows = [
        ("VMIs/s (Running throughput)", *median(lambda r: r["running_per_s"])),
        ("create->Running p50 ms", *median(lambda r: 1000 * r["p50_s"])),
        ("create->Running p95 ms", *median(lambda r: 1000 * r["p95_s"])),
    ]
    services = dict.fromkeys([name for r in old + new for name in r["cpu_ms_per_vmi"]])
    for name in services:
        rows.append((f"CPU ms/VMI {name}", *median(lambda r: r["cpu_ms_per_vmi"].get(name, 0.0))))
    rows.append(("CPU ms/VMI total", *median(lambda r: sum(r["cpu_ms_per_vmi"].values()))))
    rows.append(("store writes per VMI", *median(lambda r: r["vmi_writes_per_vmi"])))
    rows.append(("bus messages per VMI", *median(lambda r: r["bus_msgs_per_vmi"])))
    rows.append(("NATS route messages per VMI", *median(lambda r: r.get("route_msgs_per_vmi", 0.0))))
    rows.append(("NATS route KiB per VMI", *median(lambda r: r.get("route_kib_per_vmi", 0.0))))
    return rows


def report_comparison(results: list[dict], key: str, baseline: str, current: str, *, title: str = "old vs new") -> None:
    """``current`` against ``baseline`` per scenario, the runs told apart by ``results[i][key]``
    (``tree`` or ``topology``): the median of each figure over the repetitions, and the ratio
    current/baseline."""
    for (count, interval) in dict.fromkeys((r["count"], r["interval_s"]) for r in results):
        runs = [r for r in results if (r["count"], r["interval_s"]) == (count, interval)]
        old = [r for r in runs if r[key] == baseline]
        new = [r for r in runs if r[key] == current]
        if not old or not new:
            continue
        print(f"\n== {title}: {count} VMIs, interval {interval} s, {len(old)} run(s) each (medians) ==")
        ratio = f"{current}/{baseline}"
        print(f"{'':32} {baseline:>14} {current:>14} {ratio:>14}")
        for name, o, n in compute_comparison_rows(old, new):
            print(f"{name:32} {o:14.2f} {n:14.2f} {f'{n / o:.2f}' if o else '-':>14}")
        print("  (VMIs/s and latency move with the machine's load; CPU per VMI much less: on a shared "
              "machine, trust the CPU rows and use --repeat)")
        for r in runs:
            print(f"  run {r[key]:>12}: {r['running_per_s']:.1f} VMIs/s, load average before "
                  f"{r['loadavg_before'][0]} / at all Running {r['loadavg'][0]} (1 min; {os.cpu_count()} CPUs)")
