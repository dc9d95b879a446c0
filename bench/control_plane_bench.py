"""B1/B2 control-plane benchmark (performance-anchors.md): create -> Running for many VMIs.

Runs a private nats-server, one ``virt-controller`` process and a node-agent process, then a
driver creates bare VMIs (as density tests do: 90Mi, 100m CPU) either paced (``--interval``) or
all at once, and waits until every one is Running. Figures:

* create -> Running p50/p95/p99 from each VMI's own ``phaseTransitionTimestamps`` (Pending, set
  at create as virt-api's admission does, to Running; microsecond stamps);
* Running throughput (VMIs/s) from first create to last Running;
* store writes per VMI (messages added to each KV bucket's stream; leases and nodes listed
  apart as heartbeats), bus messages per VMI (nats-server ``/varz`` in_msgs);
* CPU seconds and peak RSS (VmHWM) of each process;
* deletion: all VMIs deleted, time until the store holds none.

By default the real scheduler-bridge and virt-handler run, the handler on libvirt's test driver
(a simulated host of ``--node-cpus``/``--node-memory-gib``); ``--agents standin`` replaces both
by one process writing what they write (nodeName + Scheduled, then Running + Ready; Succeeded on
deletion), which measures the controller's share alone.

Old against new in one run: ``--baseline-tree PATH`` starts the services of another checkout
(e.g. ``git worktree add --detach ../bench-old <commit>``) for the same scenarios, alternating
with this checkout's (or ``--tree PATH``'s) on the same machine, each run with a fresh
nats-server and fresh processes, and ends with a table of both and the ratios new/old. The
driver (this file, :mod:`bench.control_plane_services`) always runs from this checkout (its
``shared`` store client and nats-server launcher) and never imports a module of a tree under
test; see that module for how each tree's services are
isolated and how their flags are found. The load average is printed with every run: compare
figures only from one run on one machine. Usage::

    .venv/bin/python bench/control_plane_bench.py              # 100 paced (100 ms) and 1,000 at once
    .venv/bin/python bench/control_plane_bench.py --count 100 --interval 0.1
    .venv/bin/python bench/control_plane_bench.py --count 1000 --interval 0 --baseline-tree ../bench-old
    .venv/bin/python bench/control_plane_bench.py --count 8000 --interval 0 --baseline-tree ../bench-old --no-delete
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.control_plane_report import report, report_comparison  # noqa: E402
from bench.control_plane_services import ServiceTree, start_services, wait_ready  # noqa: E402
from shared.errors import NotFound  # noqa: E402
from shared.natsserver import NatsServer  # noqa: E402
from shared.store import ObjectStore  # noqa: E402
from shared.store.keys import compute_bucket, stream_name  # noqa: E402

VMIS = "virtualmachineinstances"
NS = "bench"
PREFIX = "kvb_"


def micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# -- measurement helpers --------------------------------------------------------------------------
def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cpu, peak


def varz(server: NatsServer) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/varz", timeout=2) as resp:
        return json.load(resp)


async def bucket_writes(store: ObjectStore) -> dict[str, int]:
    """Messages ever stored per KV bucket (last sequence of its stream)."""
    js = store.bus.jetstream()
    out = {}
    for plural in (VMIS, "virtualmachines", "nodes", "leases"):
        try:
            info = await js.stream_info(stream_name(compute_bucket(PREFIX, plural)))
            out[plural] = info.state.last_seq
        except Exception:
            out[plural] = 0
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


args_verbose = False


async def wait_progress(done: asyncio.Event, running: set[str], count: int, stall_timeout: float) -> None:
    """Wait for ``done``; raise RuntimeError when no further VMI became Running for
    ``stall_timeout`` seconds (a full node, a dead service) instead of waiting for ever."""
    seen, since = -1, time.monotonic()
    while not done.is_set():
        if len(running) != seen:
            seen, since = len(running), time.monotonic()
        elif time.monotonic() - since > stall_timeout:
            raise RuntimeError(f"stalled: {seen} of {count} VMIs Running, none more for {stall_timeout:.0f} s "
                               "(node too small? see --node-cpus/--node-memory-gib)")
        try:
            await asyncio.wait_for(done.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


def compute_node_size(count: int, cpus: int | None, memory_gib: int | None) -> tuple[int, int]:
    """The test-driver host's (CPUs, GiB): what was asked, else room for ``count`` bench VMIs
    (100m CPU, 90Mi each) plus a margin, at least 256 of each."""
    need_cpus = -(-count // 10) + 16
    need_gib = -(-count * 90 // 1024) + 16
    return cpus or max(256, need_cpus), memory_gib or max(256, need_gib)


def make_vmi(name: str) -> dict:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS, "labels": {"bench": "b1"}},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]},
                                "resources": {"requests": {"memory": "90Mi", "cpu": "100m"}}},
                     "networks": [{"name": "default", "pod": {}}]},
            "status": {"phase": "Pending",
                       "phaseTransitionTimestamps": [{"phase": "Pending", "phaseTransitionTimestamp": micro_now()}]}}


async def scenario(server: NatsServer, pids: dict[str, int], count: int, interval: float,
                   label: str, *, delete: bool = True, stall_timeout: float = 60.0) -> dict:
    """Create ``count`` VMIs (``interval`` seconds apart, 0 = all at once), wait until all are
    Running, then (``delete``) delete them all and wait until none is left; returns the figures
    (seconds, VMIs/s, CPU seconds per process in ``pids``, ...)."""
    store = await ObjectStore.connect([server.url], bucket_prefix=PREFIX, name="bench-driver")
    before_writes = await bucket_writes(store)
    before_msgs = varz(server)["in_msgs"]
    before_cpu = {name: proc_usage(pid)[0] for name, pid in pids.items()}
    running: set[str] = set()
    done = asyncio.Event()
    names = [f"{label}-{i:04d}" for i in range(count)]
    wanted = set(names)

    async def watch() -> None:
        async for event in store.watch(VMIS, NS):
            obj = event.object
            if event.type != "DELETED" and (obj.get("status") or {}).get("phase") == "Running":
                if obj["metadata"]["name"] in wanted:
                    running.add(obj["metadata"]["name"])
                    if running >= wanted:
                        done.set()
                        return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    start = time.monotonic()
    if interval > 0:
        for name in names:
            await store.create(VMIS, make_vmi(name))
            await asyncio.sleep(interval)
    else:
        sem = asyncio.Semaphore(100)

        async def one(name: str) -> None:
            async with sem:
                await store.create(VMIS, make_vmi(name))
        await asyncio.gather(*(one(n) for n in names))
    created_at = time.monotonic()
    try:
        await wait_progress(done, running, count, stall_timeout)
    except BaseException:
        watcher.cancel()
        await store.close()
        raise
    all_running = time.monotonic()
    watcher.cancel()
    items, _ = await store.list(VMIS, NS, label_selector="bench=b1")
    latencies, first_create, last_running = [], None, None
    for vmi in items:
        if vmi["metadata"]["name"] not in wanted:
            continue
        stamps = {s["phase"]: parse(s["phaseTransitionTimestamp"]) for s in vmi["status"]["phaseTransitionTimestamps"]}
        latencies.append(stamps["Running"] - stamps["Pending"])
        first_create = min(first_create or stamps["Pending"], stamps["Pending"])
        last_running = max(last_running or stamps["Running"], stamps["Running"])
    after_writes = await bucket_writes(store)
    after_msgs = varz(server)["in_msgs"]
    usage = {name: proc_usage(pid) for name, pid in pids.items()}
    load = os.getloadavg()
    if not delete:
        await store.close()
        return _figures(label, count, interval, latencies, first_create, last_running, start, created_at,
                        all_running, after_writes, before_writes, after_msgs - before_msgs, usage, before_cpu,
                        load, None, None)
    # deletion
    del_start = time.monotonic()
    sem = asyncio.Semaphore(100)

    async def delete(name: str) -> None:
        async with sem:
            try:
                await store.delete(VMIS, NS, name)
            except NotFound:
                pass
    await asyncio.gather(*(delete(n) for n in names))
    deletes_sent = time.monotonic() - del_start
    while True:
        left, _ = await store.list(VMIS, NS, label_selector="bench=b1")
        if args_verbose:
            final = sum(1 for v in left if (v.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
            print(f"  t={time.monotonic() - del_start:.1f}s left={len(left)} final={final}")
        if not left:
            break
        if time.monotonic() - del_start > 120:
            break
        await asyncio.sleep(0.5 if args_verbose else 0.05)
    deleted_in = time.monotonic() - del_start
    await store.close()
    return _figures(label, count, interval, latencies, first_create, last_running, start, created_at, all_running,
                    after_writes, before_writes, after_msgs - before_msgs, usage, before_cpu, load, deleted_in,
                    deletes_sent)


def _figures(label, count, interval, latencies, first_create, last_running, start, created_at, all_running,
             after_writes, before_writes, msgs, usage, before_cpu, load, deleted_in, deletes_sent) -> dict:
    writes = {k: after_writes[k] - before_writes[k] for k in after_writes}
    cpu = {name: round(u[0] - before_cpu[name], 2) for name, u in usage.items()}
    return {
        "label": label, "count": count, "interval_s": interval,
        "p50_s": statistics.median(latencies), "p95_s": pct(latencies, 95), "p99_s": pct(latencies, 99),
        "max_s": max(latencies),
        "running_per_s": count / max(last_running - first_create, 1e-6),
        "create_wall_s": created_at - start, "all_running_wall_s": all_running - start,
        "vmi_writes_per_vmi": writes[VMIS] / count,
        "heartbeat_writes": writes["nodes"] + writes["leases"],
        "bus_msgs_per_vmi": msgs / count,
        "cpu_s": cpu,
        "cpu_ms_per_vmi": {name: round(1000 * v / count, 3) for name, v in cpu.items()},
        "peak_rss_mib": {name: round(u[1] / 2**20, 1) for name, u in usage.items()},
        "loadavg": [round(x, 2) for x in load],
        "delete_all_s": deleted_in, "deletes_sent_s": deletes_sent,
    }


async def run_tree(tree: ServiceTree, args: argparse.Namespace, count: int, interval: float, label: str) -> dict:
    """One scenario against the services of ``tree``: a fresh nats-server and fresh service
    processes (so no run inherits another's caches or buckets), stopped afterwards."""
    node_cpus, node_gib = compute_node_size(count, args.node_cpus, args.node_memory_gib)
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        services = None
        try:
            services = start_services(tree, server.url, Path(tmp), prefix=PREFIX, workers=args.workers,
                                      agents=args.agents, node_cpus=node_cpus, node_memory_gib=node_gib,
                                      standin=[sys.executable, "-m", "bench.control_plane_standin", server.url])
            store = await ObjectStore.connect([server.url], bucket_prefix=PREFIX, name="bench-ready")
            try:
                await wait_ready(store, services)
            finally:
                await store.close()
            pids = {**services.pids(), "nats-server": server.pid or 0}
            load_before = [round(x, 2) for x in os.getloadavg()]
            result = await scenario(server, pids, count, interval, f"{label}{count}", delete=not args.no_delete,
                                    stall_timeout=args.stall_timeout)
            services.check_alive()
            result.update(tree=tree.label, tree_path=str(tree.path), loadavg_before=load_before)
            return result
        finally:
            if services is not None:
                services.stop()
            server.stop()


async def bench(args: argparse.Namespace) -> None:
    current = ServiceTree(Path(args.tree).resolve() if args.tree else ROOT, args.tree_label)
    trees = [current]
    if args.baseline_tree:
        baseline = ServiceTree(Path(args.baseline_tree).resolve(), args.baseline_label)
        if baseline.label == current.label:
            baseline.label += "(baseline)"
        trees = [baseline, current]
    for tree in trees:
        tree.check_isolation()
    scenarios = [(args.count, args.interval, "paced" if args.interval > 0 else "burst")] if args.count \
        else [(100, 0.1, "paced"), (1000, 0.0, "burst")]
    results = []
    for count, interval, label in scenarios:
        for rep in range(args.repeat):
            # alternate the order between repetitions so neither tree always runs on a warmer machine
            for tree in (trees if rep % 2 == 0 else trees[::-1]):
                print(f"\n-- {tree.label} ({tree.path}): {count} VMIs, interval {interval} s, run {rep + 1}",
                      flush=True)
                result = await run_tree(tree, args, count, interval, label)
                report(result)
                results.append(result)
    for tree in trees:
        for note in dict.fromkeys(tree.notes):
            print(f"note ({tree.label}): {note}")
    if args.baseline_tree:
        report_comparison(results, trees[0].label, trees[1].label)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=0, help="VMIs (0 = the two B1 scenarios)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between creates (0 = burst)")
    parser.add_argument("--workers", type=int, default=8, help="controller workers per controller")
    parser.add_argument("--verbose", action="store_true", help="print the deletion progress")
    parser.add_argument("--agents", choices=["real", "standin"], default="real",
                        help="real: scheduler-bridge + virt-handler on libvirt's test driver; "
                             "standin: one process writing what they write (control plane alone)")
    parser.add_argument("--node-cpus", type=int, default=None,
                        help="test-driver host CPUs (real agents; default: room for --count, at least 256)")
    parser.add_argument("--node-memory-gib", type=int, default=None,
                        help="test-driver host memory (real agents; default: room for --count, at least 256)")
    parser.add_argument("--stall-timeout", type=float, default=60.0,
                        help="give up when no further VMI became Running for this many seconds")
    parser.add_argument("--tree", metavar="PATH", help="checkout whose services are measured (default: this one)")
    parser.add_argument("--tree-label", default="new", help="name of --tree in reports")
    parser.add_argument("--baseline-tree", metavar="PATH",
                        help="also measure the services of this checkout (e.g. a detached worktree of an older "
                             "commit) in the same run, and print new/old ratios")
    parser.add_argument("--baseline-label", default="old", help="name of --baseline-tree in reports")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tree and scenario (order alternates)")
    parser.add_argument("--no-delete", action="store_true", help="skip the deletion measurement")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures to this file")
    args = parser.parse_args()
    global args_verbose
    args_verbose = args.verbose
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
