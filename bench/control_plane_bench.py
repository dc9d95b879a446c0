"""B1/B2 control-plane benchmark (performance-anchors.md): create -> Running for many VMIs.

Runs a private nats-server (or a NATS cluster, see topologies), ``virt-controller`` and the node
agents, then a driver creates bare VMIs (as density tests do: 90Mi, 100m CPU) either paced (``--interval``) or
all at once, and waits until every one is Running. Figures:

* create -> Running p50/p95/p99 from each VMI's own ``phaseTransitionTimestamps`` (Pending, set
  at create as virt-api's admission does, to Running; microsecond stamps);
* Running throughput (VMIs/s) from first create to last Running;
* store writes per VMI (messages added to each KV bucket's stream; leases and nodes listed
  apart as heartbeats), bus messages per VMI (``/varz`` in_msgs of every node less what the
  nodes received from each other, i.e. what clients published);
* on a NATS cluster, the traffic between its nodes per VMI (``/routez`` in_msgs/in_bytes:
  JetStream's RAFT replication of every stream write, forwarded client messages and interest
  updates, heartbeats of the RAFT groups during the run);
* CPU seconds and peak RSS (VmHWM) of each process, every replica and NATS node included, and
  CPU ms per VMI per service (its replicas summed);
* deletion: all VMIs deleted, time until the store holds none.

By default the real scheduler-bridge and virt-handler run, the handler on libvirt's test driver
(a simulated host of ``--node-cpus``/``--node-memory-gib``); ``--agents standin`` replaces both
by one process writing what they write (nodeName + Scheduled, then Running + Ready; Succeeded on
deletion), which measures the controller's share alone.

Topologies (``--topology``, :mod:`bench.control_plane_topology`): ``single`` (the default:
the single-host installation, one nats-server R1 and one process per service) and ``hosts3``
(the cluster of ``virtctl up --hosts 3``: three hosts as network namespaces on a private bridge,
a nats-server on each host's address joined as one cluster with JetStream R3, the services
started with ``--store-replicas 3`` and every node's URL, virt-controller and scheduler-bridge
at two replicas on different hosts (leader + hot standby), a virt-handler on each host; the
driver connects from the machine's own namespace over the bridge). ``both`` runs each scenario
on both, alternating, and ends with a table of both and the ratios hosts3/single: the cost of
R3 replication and of the standbys. ``hosts3`` needs root; the hosts' namespaces, veths and
bridge and every process are removed at the end of each run, also on failure, Ctrl-C or
SIGTERM (``--keep DIR`` keeps the logs and data). The default stays ``single`` because a
cluster run needs root and triples the processes on the machine.

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
    sudo .venv/bin/python bench/control_plane_bench.py --topology both --paced-count 200 --burst-count 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
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
from bench.control_plane_services import NODE, ServiceTree, start_services, wait_ready  # noqa: E402
from bench.control_plane_topology import TOPOLOGIES, apply_topology, compute_readiness  # noqa: E402
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


def monitor(server: NatsServer, endpoint: str) -> dict:
    """A nats-server monitoring endpoint (``varz``, ``routez``...) as JSON (127.0.0.1, or a
    cluster node's host address on the bridge)."""
    with urllib.request.urlopen(f"http://{server.http_host}:{server.http_port}/{endpoint}", timeout=2) as resp:
        return json.load(resp)


def bus_counters(servers: list[NatsServer]) -> dict[str, int]:
    """Messages and bytes the NATS nodes received, summed over ``servers``: ``in_msgs`` from
    ``/varz`` (every connection, routes included), ``route_msgs``/``route_bytes`` from ``/routez``
    (what the nodes sent each other: JetStream's RAFT replication, forwarded client messages and
    interest updates; 0 on one server)."""
    totals = {"in_msgs": 0, "route_msgs": 0, "route_bytes": 0}
    for server in servers:
        totals["in_msgs"] += monitor(server, "varz")["in_msgs"]
        for route in monitor(server, "routez").get("routes") or []:
            totals["route_msgs"] += route.get("in_msgs", 0)
            totals["route_bytes"] += route.get("in_bytes", 0)
    return totals


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


async def wait_progress(done: asyncio.Event, running: set[str], count: int, stall_timeout: float,
                        watcher: asyncio.Task[None] | None = None) -> None:
    """Wait for ``done``; raise RuntimeError when no further VMI became Running for
    ``stall_timeout`` seconds (a full node, a dead service) instead of waiting for ever, or at
    once when ``watcher`` (the driver's watch that fills ``running``) ended without it: a
    failed watch must not pass for a stalled cluster."""
    seen, since = -1, time.monotonic()
    while not done.is_set():
        if watcher is not None and watcher.done() and not done.is_set():
            failure = None if watcher.cancelled() else watcher.exception()
            raise RuntimeError(f"the driver's watch ended at {len(running)} of {count} VMIs Running: "
                               f"{failure!r}")
        if len(running) != seen:
            seen, since = len(running), time.monotonic()
        elif time.monotonic() - since > stall_timeout:
            raise RuntimeError(f"stalled: {seen} of {count} VMIs Running, none more for {stall_timeout:.0f} s "
                               "(node too small? see --node-cpus/--node-memory-gib)")
        try:
            await asyncio.wait_for(done.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


async def stuck_phases(store: ObjectStore, names: set[str]) -> dict[str, int]:
    """How many of the VMIs ``names`` the store holds in each phase (``Running`` ones the watch
    missed show up here too), for the message of a stalled run."""
    items, _ = await store.list(VMIS, NS, label_selector="bench=b1")
    phases: dict[str, int] = {}
    for vmi in items:
        if vmi["metadata"]["name"] in names:
            phase = (vmi.get("status") or {}).get("phase") or "(none)"
            phases[phase] = phases.get(phase, 0) + 1
    return phases


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


async def scenario(servers: list[NatsServer], pids: dict[str, int], count: int, interval: float,
                   label: str, *, delete: bool = True, stall_timeout: float = 60.0, replicas: int = 1) -> dict:
    """Create ``count`` VMIs (``interval`` seconds apart, 0 = all at once) through any node of
    ``servers``, wait until all are Running, then (``delete``) delete them all and wait until none
    is left; returns the figures (seconds, VMIs/s, CPU seconds per process in ``pids``, ...)."""
    store = await ObjectStore.connect([server.url for server in servers], replicas=replicas, bucket_prefix=PREFIX,
                                      name="bench-driver")
    before_writes = await bucket_writes(store)
    before_bus = bus_counters(servers)
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
        await wait_progress(done, running, count, stall_timeout, watcher)
    except RuntimeError as stalled:
        watcher.cancel()
        phases = await stuck_phases(store, wanted - running)
        await store.close()
        raise RuntimeError(f"{stalled}; the others in the store: {phases}") from None
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
    after_bus = bus_counters(servers)
    bus = {key: after_bus[key] - before_bus[key] for key in after_bus}
    usage = {name: proc_usage(pid) for name, pid in pids.items()}
    load = os.getloadavg()
    if not delete:
        await store.close()
        return _figures(label, count, interval, latencies, first_create, last_running, start, created_at,
                        all_running, after_writes, before_writes, bus, usage, before_cpu,
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
                    after_writes, before_writes, bus, usage, before_cpu, load, deleted_in,
                    deletes_sent)


def compute_service_cpu(cpu_by_process: dict[str, float]) -> dict[str, float]:
    """CPU seconds per service, summing its replicas (processes named ``<service>@<host>``)."""
    out: dict[str, float] = {}
    for name, seconds in cpu_by_process.items():
        service = name.split("@", 1)[0]
        out[service] = round(out.get(service, 0.0) + seconds, 2)
    return out


def _figures(label, count, interval, latencies, first_create, last_running, start, created_at, all_running,
             after_writes, before_writes, bus, usage, before_cpu, load, deleted_in, deletes_sent) -> dict:
    writes = {k: after_writes[k] - before_writes[k] for k in after_writes}
    cpu_by_process = {name: round(u[0] - before_cpu[name], 2) for name, u in usage.items()}
    cpu = compute_service_cpu(cpu_by_process)
    return {
        "label": label, "count": count, "interval_s": interval,
        "p50_s": statistics.median(latencies), "p95_s": pct(latencies, 95), "p99_s": pct(latencies, 99),
        "max_s": max(latencies),
        "running_per_s": count / max(last_running - first_create, 1e-6),
        "create_wall_s": created_at - start, "all_running_wall_s": all_running - start,
        "vmi_writes_per_vmi": writes[VMIS] / count,
        "heartbeat_writes": writes["nodes"] + writes["leases"],
        "bus_msgs_per_vmi": (bus["in_msgs"] - bus["route_msgs"]) / count,
        "route_msgs_per_vmi": bus["route_msgs"] / count,
        "route_kib_per_vmi": bus["route_bytes"] / 1024 / count,
        "cpu_s": cpu, "cpu_s_by_process": cpu_by_process,
        "cpu_ms_per_vmi": {name: round(1000 * v / count, 3) for name, v in cpu.items()},
        "peak_rss_mib": {name: round(u[1] / 2**20, 1) for name, u in usage.items()},
        "loadavg": [round(x, 2) for x in load],
        "delete_all_s": deleted_in, "deletes_sent_s": deletes_sent,
    }


async def run_tree(tree: ServiceTree, topology_name: str, args: argparse.Namespace, count: int, interval: float,
                   label: str) -> dict:
    """One scenario against the services of ``tree`` in topology ``topology_name``: a fresh
    network (hosts), fresh nats-server(s) and fresh service processes (so no run inherits
    another's caches or buckets), all stopped and removed afterwards, also on failure."""
    node_cpus, node_gib = compute_node_size(count, args.node_cpus, args.node_memory_gib)
    with contextlib.ExitStack() as made:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f"{label}{count}-{topology_name}-{tree.label}-", dir=Path(args.keep).resolve())
        else:
            tmp = made.enter_context(tempfile.TemporaryDirectory(prefix="cp-bench-"))
        topo = made.enter_context(apply_topology(topology_name, Path(tmp)))
        services = None
        try:
            services = start_services(tree, topo.urls, Path(tmp), prefix=PREFIX, workers=args.workers,
                                      agents=args.agents, node_cpus=node_cpus, node_memory_gib=node_gib,
                                      standin=[sys.executable, "-m", "bench.control_plane_standin", topo.urls[0]],
                                      placements=topo.placements, replicas=topo.replicas)
            leases, nodes = compute_readiness(topology_name, topo.placements)
            if args.agents != "real":
                nodes = [NODE]
            store = await ObjectStore.connect(topo.urls, replicas=topo.replicas, bucket_prefix=PREFIX,
                                              name="bench-ready")
            try:
                await wait_ready(store, services, leases=leases, nodes=nodes)
            finally:
                await store.close()
            pids = {**services.pids(), **topo.nats_pids()}
            load_before = [round(x, 2) for x in os.getloadavg()]
            result = await scenario(topo.servers, pids, count, interval, f"{label}{count}", delete=not args.no_delete,
                                    stall_timeout=args.stall_timeout, replicas=topo.replicas)
            services.check_alive()
            result.update(tree=tree.label, tree_path=str(tree.path), topology=topology_name,
                          loadavg_before=load_before)
            return result
        finally:
            if services is not None:
                services.stop()


def compute_scenarios(args: argparse.Namespace) -> list[tuple[int, float, str]]:
    """``(count, interval s, label)`` of each scenario: ``--count`` with ``--interval`` alone, else
    B1's two (``--paced-count`` 100 ms apart, ``--burst-count`` at once)."""
    if args.count:
        return [(args.count, args.interval, "paced" if args.interval > 0 else "burst")]
    return [(args.paced_count, 0.1, "paced"), (args.burst_count, 0.0, "burst")]


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
    # SIGTERM as Ctrl-C: cancel, so that every run's finally/exit blocks stop what it started
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    topologies = list(TOPOLOGIES) if args.topology == "both" else [args.topology]
    # every (topology, tree) pair; the order alternates between repetitions so that no pair
    # always runs on a warmer (or busier) machine
    pairs = [(topology, tree) for topology in topologies for tree in trees]
    results = []
    for count, interval, label in compute_scenarios(args):
        for rep in range(args.repeat):
            for topology, tree in (pairs if rep % 2 == 0 else pairs[::-1]):
                print(f"\n-- {tree.label} ({tree.path}), {topology}: {count} VMIs, interval {interval} s, "
                      f"run {rep + 1}", flush=True)
                result = await run_tree(tree, topology, args, count, interval, label)
                report(result)
                results.append(result)
    for tree in trees:
        for note in dict.fromkeys(tree.notes):
            print(f"note ({tree.label}): {note}")
    if args.baseline_tree:
        for topology in topologies:
            report_comparison([r for r in results if r["topology"] == topology], "tree", trees[0].label,
                              trees[1].label, title=f"old vs new ({topology})")
    if len(topologies) == 2:
        for tree in trees:
            report_comparison([r for r in results if r["tree"] == tree.label], "topology", *topologies,
                              title=f"R3 cluster vs one host ({tree.label} tree)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, default ``sys.argv[1:]``); exits 2 with usage on bad input."""
    parser = argparse.ArgumentParser(prog="bench/control_plane_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=0,
                        help="VMIs of one scenario paced by --interval (0 = B1's two: --paced-count, --burst-count)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between creates (0 = burst)")
    parser.add_argument("--paced-count", type=int, default=100, help="VMIs of B1's paced scenario (100 ms apart)")
    parser.add_argument("--burst-count", type=int, default=1000, help="VMIs of B1's burst scenario (all at once)")
    parser.add_argument("--topology", choices=[*TOPOLOGIES, "both"], default="single",
                        help="single: one nats-server and one process per service (the single-host installation); "
                             "hosts3: 3 hosts as network namespaces, a 3-node NATS cluster (R3), 2 replicas of "
                             "virt-controller and scheduler-bridge, a virt-handler per host (needs root); "
                             "both: each scenario on both, with a hosts3/single table")
    parser.add_argument("--workers", type=int, default=8, help="controller workers per controller")
    parser.add_argument("--verbose", action="store_true", help="print the deletion progress")
    parser.add_argument("--agents", choices=["real", "standin"], default="real",
                        help="real: scheduler-bridge + virt-handler on libvirt's test driver; "
                             "standin: one process writing what they write (control plane alone; single only)")
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
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each run's logs and data in a new directory under DIR (default: a temporary one, "
                             "removed)")
    args = parser.parse_args(argv)
    if min(args.count, args.paced_count, args.burst_count, args.repeat - 1) < 0 or not (args.paced_count and
                                                                                        args.burst_count):
        parser.error("counts must be positive (--count 0 means B1's two scenarios) and --repeat at least 1")
    if args.topology != "single" and args.agents != "real":
        parser.error("--agents standin runs on one host only (--topology single)")
    if args.topology != "single" and os.geteuid() != 0:
        parser.error(f"--topology {args.topology} makes network namespaces: run it as root")
    return args


def main() -> None:
    args = parse_args()
    global args_verbose
    args_verbose = args.verbose
    try:
        asyncio.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # every run's finally/exit blocks have stopped and removed what it made by now
        print("interrupted: processes stopped, hosts' network removed", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
