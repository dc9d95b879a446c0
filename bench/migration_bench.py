"""B6 (performance-anchors.md): live migration of a 256 MiB TCG demo guest on one host.

Two parts in one run, each over two variants of the same guest (``idle``: memory filled once;
``dirty``: filled, then a loop rewrites ``--dirty-rate`` MiB every second). The load is the
demo guest's cloud-init user data (a ``#!`` script, :func:`compute_user_data`): it mounts a
tmpfs, fills up to ``--fill-mib`` MiB (bounded by the guest's free memory) with copies of a
4 MiB random block (non-zero pages, which QEMU sends in full) and prints a marker on the
serial console.

* **Floor**: raw ``virsh migrate --live --p2p --unsafe --migrateuri tcp://127.0.0.1`` of the
  guest back and forth between the system libvirtd (node 1 of ``virtctl up``) and a private
  node daemon (``shared.libvirtd.apply_node_daemons``; own namespace and host UUID), facts in
  feasibility-on-this-machine.md §1. Disks are the same files on both sides (``--unsafe``:
  shared storage). Per migration: virsh wall time, and QEMU's figures from ``virsh domjobinfo
  --completed --rawstats`` on the destination (time elapsed, downtime, bytes, iterations).
* **API**: the same guest as a VM of an embedded installation (``virtctl up --nodes 2``); per
  migration a ``VirtualMachineInstanceMigration`` is created through virt-api and watched to
  ``Succeeded``: create -> Succeeded from the object's own ``phaseTransitionTimestamps``
  (and the client's wall time); QEMU's figures from the ``JOB_COMPLETED`` event of the source
  daemon (a passive observer), beside what the product reports in
  ``status.migrationState.progress`` (``downtimeMs``, ``elapsedMs``, ``dataProcessedBytes``);
  orchestration overhead = total - QEMU time. That part lives in :mod:`bench.migration_bench_api`.

Each variant starts with one warm-up migration, discarded. Reported: p50/p95 (nearest rank) and
the KubeVirt-bucketed estimate, the anchors' goals, the ratio API/floor, the load average and
host CPU use during each part. Usage::

    .venv/bin/python bench/migration_bench.py                    # floor + API, 10 per variant
    .venv/bin/python bench/migration_bench.py --parts floor --count 5 --json /tmp/b6.json

Needs root, QEMU and libvirtd (started when not running, stopped again if started here).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guest.demo_guest import DEMO_DISK_REF, apply_demo_guest_build, apply_demo_guest_import  # noqa: E402
from shared import libvirtd, libvirtd_users  # noqa: E402

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
READY = b"demo guest ready"
FILLED = b"bench fill done"
BOOT_TIMEOUT = 240.0
MIGRATION_TIMEOUT = 300.0
# KubeVirt's buckets for the migration phase-transition histogram (performance-anchors.md §9)
BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 90, 120, 150, 180, 240, 300, 600)
GOALS = {"downtime_p95_ms_idle": 300.0, "overhead_p95_s": 2.0, "total_idle_s": 5.0}
ANCHORS = "QEMU downtime target 300 ms; KubeVirt maxDowntimeMs 900 ms; OpenStack live_migrate median 15 s"


# -- pure helpers ---------------------------------------------------------------------------------
def compute_user_data(fill_mib: int, dirty_mib_per_s: int) -> str:
    """The guest's cloud-init ``#!`` script: fill a tmpfs with up to ``fill_mib`` MiB (never more
    than the free memory minus 40 MiB), print ``bench fill done: <n> MiB``, then (when
    ``dirty_mib_per_s`` > 0) rewrite that many MiB of it every second in the background."""
    return f"""#!/bin/sh
avail=$(awk '/MemAvailable/{{print int($2/1024)}}' /proc/meminfo)
fill=$((avail - 40)); [ "$fill" -gt {fill_mib} ] && fill={fill_mib}
fill=$((fill / 4 * 4))
mkdir -p /fill && mount -t tmpfs -o size=$((fill + 8))m tmpfs /fill
dd if=/dev/urandom of=/fill/seed bs=1M count=4 2>/dev/null
i=0; while [ $i -lt $((fill / 4)) ]; do cat /fill/seed >> /fill/data; i=$((i + 1)); done
echo "bench fill done: $fill MiB"
rate={dirty_mib_per_s}
if [ $rate -gt 0 ]; then
  slots=$((fill / rate))
  (k=0; while true; do
     dd if=/fill/seed of=/fill/data bs=1M count=$rate seek=$(((k % slots) * rate)) conv=notrunc 2>/dev/null
     k=$((k + 1)); sleep 1
   done) </dev/null >/dev/null 2>&1 &
  echo "bench dirtying $rate MiB/s"
fi
"""


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def bucketed_quantile(values: list[float], q: float, buckets: tuple[float, ...] = BUCKETS) -> float | None:
    """PromQL ``histogram_quantile(q, ...)`` over ``values`` observed into ``buckets`` (seconds):
    linear interpolation inside the bucket holding the rank, as KubeVirt's graphs show it."""
    if not values:
        return None
    rank = q * len(values)
    lower, below = 0.0, 0
    for bound in buckets:
        count = sum(1 for v in values if v <= bound)
        if count >= rank:
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return buckets[-1]


def parse_rawstats(text: str) -> dict[str, float]:
    """``virsh domjobinfo --rawstats`` lines (``name: value``) -> numbers (non-numbers dropped)."""
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            try:
                stats[key.strip()] = float(value.strip())
            except ValueError:
                continue
    return stats


def parse_time(text: str) -> float:
    """RFC 3339 (``Z``, optional fraction) -> POSIX seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def summarize(samples: list[dict], keys: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    """p50/p95 (nearest rank), bucketed p50/p95 for ``*_s`` keys, min and max of each key."""
    out: dict[str, dict[str, float | None]] = {}
    for key in keys:
        values = [s[key] for s in samples if s.get(key) is not None]
        row: dict[str, float | None] = {"n": len(values), "p50": percentile(values, 50),
                                        "p95": percentile(values, 95),
                                        "min": min(values, default=None), "max": max(values, default=None)}
        if key.endswith("_s"):
            row["p50_bucketed"] = bucketed_quantile(values, 0.5)
            row["p95_bucketed"] = bucketed_quantile(values, 0.95)
        out[key] = row
    return out


# -- host load ------------------------------------------------------------------------------------
def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the host from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class LoadMeter:
    """Host CPU use (% of all cores) and load averages between :meth:`start` and :meth:`stop`."""

    def start(self) -> LoadMeter:
        self.t0, self.c0, self.la0 = time.monotonic(), cpu_times(), os.getloadavg()
        return self

    def stop(self) -> dict:
        busy, total = cpu_times()
        share = (busy - self.c0[0]) / max(total - self.c0[1], 1.0)
        return {"seconds": round(time.monotonic() - self.t0, 1), "host_cpu_pct": round(100 * share, 1),
                "loadavg_before": [round(x, 2) for x in self.la0],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_has(path: Path, *markers: bytes) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return all(m in data for m in markers)


# -- floor: raw virsh -----------------------------------------------------------------------------
def guest_vmi(name: str, user_data: str) -> dict:
    """The demo guest as a VMI (256 MiB, 1 core, containerDisk + cloud-init), as examples/vm-demo.yaml."""
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
            "spec": {"domain": {"memory": {"guest": "256Mi"}, "cpu": {"cores": 1},
                                "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                                      {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                                            "rng": {}}},
                     "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}},
                                 {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": user_data}}]}}


def virsh(uri: str, *args: str, timeout: float = MIGRATION_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)


def migrate_once(domain: str, source: str, dest_from_source: str, dest: str) -> dict:
    """One raw p2p live migration; virsh wall time and the destination's completed-job stats."""
    t0 = time.monotonic()
    proc = virsh(source, "migrate", "--live", "--p2p", "--unsafe", domain, dest_from_source,
                 "--migrateuri", "tcp://127.0.0.1")
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"virsh migrate {source} -> {dest}: {proc.stderr.strip()}")
    stats = parse_rawstats(virsh(dest, "domjobinfo", "--completed", "--rawstats", domain, timeout=30).stdout)
    data = stats.get("memory_processed")
    if data is not None:
        data += stats.get("disk_processed", 0.0)
    return {"wall_s": wall, "qemu_ms": stats.get("time_elapsed"), "downtime_ms": stats.get("downtime"),
            "data_mib": None if data is None else data / 2**20, "iterations": stats.get("memory_iteration")}


def run_floor(args, guest, variants: list[str]) -> dict:
    """The floor part (see the module docstring); returns {variant: {samples, summary}, load}."""
    from services.virt_handler import kvm_probe
    from services.virt_handler.domain import CONSOLE_LOG, ConversionContext, apply_disk_preparation, cleanup
    from services.virt_handler.domain import compute_domain_xml, domain_name
    from shared.images import ImageStore

    libvirtd_users.apply_shared_system_daemons()  # other runs may use them too: the last user stops them
    base = Path(tempfile.mkdtemp(prefix="kvmb-", dir="/var/tmp"))
    base.chmod(0o755)
    node = None
    results: dict = {}
    try:
        node = libvirtd.apply_node_daemons(base / "n", f"b6-{secrets.token_hex(3)}", str(uuid.uuid4()))
        sys_uri = "qemu:///system"
        sys_from_node = libvirtd.compute_migration_uri(sys_uri, libvirtd.find_system_libvirtd())
        store = ImageStore(base / "images")
        apply_demo_guest_import(store, guest)
        domain_type = kvm_probe.compute_domain_type()
        meter = LoadMeter().start()
        for variant in variants:
            vmi = guest_vmi(f"b6-floor-{variant}-{secrets.token_hex(3)}", user_data(args, variant))
            ctx = ConversionContext(domain_type=domain_type, vmi_dir=base / "vmis" / vmi["metadata"]["name"],
                                    images=store)
            apply_disk_preparation(vmi, ctx)
            dom_name = None
            try:
                out = virsh(sys_uri, "create", _write(base / f"{variant}.xml", compute_domain_xml(vmi, ctx)))
                if out.returncode != 0:
                    raise RuntimeError(f"virsh create: {out.stderr.strip()}")
                dom_name = domain_name("bench", vmi["metadata"]["name"])
                log = ctx.vmi_dir / CONSOLE_LOG
                wait_for(lambda: log_has(log, READY, FILLED), BOOT_TIMEOUT, f"{variant} guest ready and filled")
                filled = log.read_bytes().split(FILLED + b": ", 1)[1].split(b" ", 1)[0].decode()
                samples = []
                legs = ((sys_uri, node.uri, node.uri), (node.uri, sys_uri, sys_from_node))
                for i in range(args.count + 1):  # the first one is the warm-up
                    src, dst, dest_from_src = legs[i % 2]
                    sample = migrate_once(dom_name, src, dest_from_src, dst)
                    sample["direction"] = "node1->node2" if src == sys_uri else "node2->node1"
                    if args.verbose:
                        print(f"  floor {variant} #{i}{' (warm-up)' if i == 0 else ''}: {_fmt(sample)}")
                    if i:
                        samples.append(sample)
                results[variant] = {"fill_mib": int(filled), "samples": samples,
                                    "summary": summarize(samples, ("wall_s", "qemu_ms", "downtime_ms", "data_mib",
                                                                   "iterations"))}
            finally:
                if dom_name:
                    for uri in (sys_uri, node.uri):
                        virsh(uri, "destroy", dom_name, timeout=60)
                cleanup(vmi, ctx)
        results["load"] = meter.stop()
    finally:
        if node is not None:
            libvirtd.apply_stop_node(node)
        libvirtd_users.apply_leave_shared_system_daemons()
        shutil.rmtree(base, ignore_errors=True)
    return results


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def user_data(args, variant: str) -> str:
    return compute_user_data(args.fill_mib, args.dirty_rate if variant == "dirty" else 0)


def _fmt(sample: dict) -> str:
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in sample.items())


# -- report ---------------------------------------------------------------------------------------
def _p(summary: dict, key: str, which: str, scale: float = 1.0, digits: int = 0) -> str:
    value = (summary.get(key) or {}).get(which)
    return "-" if value is None else f"{value * scale:.{digits}f}"


def report(result: dict) -> None:
    """Print the per-part tables, the ratios API/floor and the goals."""
    print(f"\nB6 live migration, 256 MiB TCG demo guest, {result['count']} migrations per variant "
          f"(+1 warm-up); dirty rate {result['dirty_rate']} MiB/s; max downtime: floor QEMU's 300 ms, "
          f"API maxDowntimeMs {result['api_max_downtime_ms']}")
    print(f"{'part':<6} {'variant':<6} {'total p50/p95 s':>16} {'QEMU p50/p95 ms':>16} {'downtime p50/p95 ms':>20} "
          f"{'data p50 MiB':>12} {'overhead p95 s':>14}")
    for part, total_key in (("floor", "wall_s"), ("api", "total_s")):
        for variant, data in (result.get(part) or {}).items():
            if variant == "load":
                continue
            s = data["summary"]
            print(f"{part:<6} {variant:<6} {_p(s, total_key, 'p50', digits=2):>7} /{_p(s, total_key, 'p95', digits=2):>6}"
                  f"  {_p(s, 'qemu_ms', 'p50'):>7} /{_p(s, 'qemu_ms', 'p95'):>6}"
                  f"  {_p(s, 'downtime_ms', 'p50'):>10} /{_p(s, 'downtime_ms', 'p95'):>6}"
                  f"  {_p(s, 'data_mib', 'p50', digits=1):>11}  {_p(s, 'overhead_s', 'p95', digits=2):>13}")
            if part == "api":
                if data.get("failures"):
                    print(f"{'':<13} FAILED migrations (not measured): {len(data['failures'])}: "
                          f"{sorted({f['reason'] for f in data['failures']})}")
                print(f"{'':<13} reported progress.downtimeMs p50/p95 {_p(s, 'reported_downtime_ms', 'p50')} / "
                      f"{_p(s, 'reported_downtime_ms', 'p95')} ms, elapsedMs p50 {_p(s, 'reported_elapsed_ms', 'p50')}"
                      f" ms, dataProcessed p50 {_p(s, 'reported_data_mib', 'p50', digits=1)} MiB")
        if result.get(part):
            print(f"       load during {part}: {result[part]['load']}")
    for variant, ratio in result.get("ratios", {}).items():
        print(f"ratio api/floor ({variant}): total / virsh wall p50 {ratio['total_p50']}, p95 {ratio['total_p95']}; "
              f"total / floor QEMU time p50 {ratio['total_p50_vs_floor_qemu']}, p95 {ratio['total_p95_vs_floor_qemu']}; "
              f"QEMU downtime p50 {ratio['downtime_p50']}, p95 {ratio['downtime_p95']}")
    print(f"goals: idle downtime p95 <= {GOALS['downtime_p95_ms_idle']:.0f} ms, orchestration overhead p95 <= "
          f"{GOALS['overhead_p95_s']:.0f} s, idle total <= {GOALS['total_idle_s']:.0f} s; anchors: {ANCHORS}")


def compute_ratios(result: dict) -> dict:
    """API/floor ratios per variant present in both parts (p50/p95 of total time, p50 downtime)."""
    ratios = {}
    for variant in set(result.get("floor") or {}) & set(result.get("api") or {}) - {"load"}:
        floor, api = result["floor"][variant]["summary"], result["api"][variant]["summary"]

        def ratio(a, b):
            return round(a / b, 2) if a is not None and b else None

        qemu50, qemu95 = floor["qemu_ms"]["p50"], floor["qemu_ms"]["p95"]
        ratios[variant] = {"total_p50": ratio(api["total_s"]["p50"], floor["wall_s"]["p50"]),
                           "total_p95": ratio(api["total_s"]["p95"], floor["wall_s"]["p95"]),
                           "total_p50_vs_floor_qemu": ratio(api["total_s"]["p50"], qemu50 and qemu50 / 1000),
                           "total_p95_vs_floor_qemu": ratio(api["total_s"]["p95"], qemu95 and qemu95 / 1000),
                           "downtime_p50": ratio(api["downtime_ms"]["p50"], floor["downtime_ms"]["p50"]),
                           "downtime_p95": ratio(api["downtime_ms"]["p95"], floor["downtime_ms"]["p95"])}
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10, help="migrations per variant and part (after a warm-up)")
    parser.add_argument("--parts", default="floor,api", help="comma list of floor, api")
    parser.add_argument("--variants", default="idle,dirty", help="comma list of idle, dirty")
    parser.add_argument("--fill-mib", type=int, default=200, help="memory the guest fills (bounded by its free memory)")
    parser.add_argument("--dirty-rate", type=int, default=5, help="MiB rewritten per second in the dirty variant")
    parser.add_argument("--max-downtime-ms", type=int, default=300,
                        help="the API part's maxDowntimeMs (KubeVirt object); default 300 = QEMU's default, which "
                             "the floor's virsh migrations run with; 0 = the installation's default (KubeVirt's 900)")
    parser.add_argument("--verbose", action="store_true", help="print every migration")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    variants = [v for v in args.variants.split(",") if v]
    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    result: dict = {"count": args.count, "dirty_rate": args.dirty_rate, "fill_mib_max": args.fill_mib,
                    "api_max_downtime_ms": args.max_downtime_ms or 900}
    if "floor" in parts:
        result["floor"] = run_floor(args, guest, variants)
    if "api" in parts:
        from bench.migration_bench_api import run_api

        result["api"] = run_api(args, guest, variants)
    result["ratios"] = compute_ratios(result)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
