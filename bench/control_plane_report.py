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
    print(f"\n== {result['label']}: {result['count']} VMIs, interval {result['interval_s']} s ==")
    print(f"create->Running p50 {result['p50_s']*1000:.0f} ms  p95 {result['p95_s']*1000:.0f} ms  "
          f"p99 {result['p99_s']*1000:.0f} ms  max {result['max_s']*1000:.0f} ms")
    print(f"Running throughput {result['running_per_s']:.1f} VMIs/s  (all Running after "
          f"{result['all_running_wall_s']:.2f} s, creates took {result['create_wall_s']:.2f} s)")
    print(f"store writes per VMI {result['vmi_writes_per_vmi']:.2f} (VMI bucket; incl. the driver's create)  "
          f"heartbeat/lease writes {result['heartbeat_writes']}")
    print(f"bus messages per VMI {result['bus_msgs_per_vmi']:.1f} (nats-server in_msgs, all clients)")
    print("CPU s  " + "  ".join(f"{k} {v}" for k, v in result["cpu_s"].items()))
    print("CPU ms per VMI  " + "  ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms_per_vmi"].items()))
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


def report_comparison(results: list[dict], baseline: str, current: str) -> None:
    """Old vs new per scenario: the median of each figure over the repetitions, and new/old."""
    for (count, interval) in dict.fromkeys((r["count"], r["interval_s"]) for r in results):
        runs = [r for r in results if (r["count"], r["interval_s"]) == (count, interval)]
        old = [r for r in runs if r["tree"] == baseline]
        new = [r for r in runs if r["tree"] == current]
        if not old or not new:
            continue
        rows: list[tuple[str, float, float]] = [
            ("VMIs/s (Running throughput)", *(statistics.median(r["running_per_s"] for r in g) for g in (old, new))),
            ("create->Running p50 ms", *(1000 * statistics.median(r["p50_s"] for r in g) for g in (old, new))),
            ("create->Running p95 ms", *(1000 * statistics.median(r["p95_s"] for r in g) for g in (old, new))),
        ]
        for name in old[0]["cpu_ms_per_vmi"]:
            rows.append((f"CPU ms/VMI {name}", *(statistics.median(r["cpu_ms_per_vmi"].get(name, 0.0) for r in g)
                                                 for g in (old, new))))
        rows.append(("CPU ms/VMI all four", *(statistics.median(sum(r["cpu_ms_per_vmi"].values()) for r in g)
                                              for g in (old, new))))
        rows.append(("store writes per VMI", *(statistics.median(r["vmi_writes_per_vmi"] for r in g)
                                               for g in (old, new))))
        rows.append(("bus messages per VMI", *(statistics.median(r["bus_msgs_per_vmi"] for r in g)
                                               for g in (old, new))))
        print(f"\n== old vs new: {count} VMIs, interval {interval} s, {len(old)} run(s) each (medians) ==")
        print(f"{'':32} {'old ' + baseline:>20} {'new ' + current:>20} {'new/old':>8}")
        for name, o, n in rows:
            print(f"{name:32} {o:20.2f} {n:20.2f} {n / o if o else float('nan'):8.2f}")
        print("  (VMIs/s and latency move with the machine's load; CPU per VMI much less: on a shared "
              "machine, trust the CPU rows and use --repeat)")
        for r in runs:
            print(f"  run {r['tree']:>12}: {r['running_per_s']:.1f} VMIs/s, load average before "
                  f"{r['loadavg_before'][0]} / at all Running {r['loadavg'][0]} (1 min; {os.cpu_count()} CPUs)")
