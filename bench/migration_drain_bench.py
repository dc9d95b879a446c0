"""B8 of performance-anchors.md, node drain with migration limits: 50 VMIs are evacuated from one node
by live migration, within KubeVirt's limits.

Runs a private nats-server, virt-controller, scheduler-bridge, virt-migration and one virt-handler per
node (``--nodes``, default 3), each on its own libvirt ``test://`` host. libvirt's test driver cannot
migrate, so the handlers use the STAND-IN migration (``--stand-in-migration-seconds``, migration-design.md):
the source "transfers" for that fixed delay, then the target takes the guest over. What is measured is the
control plane's pacing of the drain, not data transfer.

Procedure: the other nodes are cordoned, ``--count`` VMIs (``evictionStrategy: LiveMigrate``) are created
and Run on the first node, the other nodes are uncordoned, the KubeVirt object sets
``parallelMigrationsPerCluster``/``parallelOutboundMigrationsPerNode``; then the first node is drained
(cordoned and tainted ``kubevirt.io/drain:NoSchedule``) and the clock runs until every VMI runs on another
node and every VMIM is final.

Figures:

* drain duration against the ideal: ``ceil(count / min(cluster limit, per-node limit x drained nodes))``
  waves of ``--stand-in-migration-seconds`` each (50 VMIs, 5/2, 1 s -> 25 s), and their ratio (goal <= 1.2);
* the highest number of migrations in flight, per source node and in the cluster, from each VMIM's
  ``phaseTransitionTimestamps`` (in flight from entering ``Scheduling`` to ``Succeeded``/``Failed``; the
  limits count exactly these phases) — must never exceed the limits;
* wasted or retried migrations: VMIMs that failed, VMIs that needed more than one VMIM, VMIs lost or left
  on the drained node;
* per-migration time from Pending to Succeeded (p50/p95/max), the median time spent in each phase, and
  when (after the taint) the first VMIM appeared, the first was admitted and the last ended.

(The figures are computed in :mod:`bench.migration_drain_figures`.) The bench asserts nothing about
speed; it exits 1 when a limit was exceeded, a VMI was left on the drained node or not Running, a VMIM
was not final or the drain did not finish within ``--timeout`` (the figures are printed all the same).

Usage::

    .venv/bin/python bench/migration_drain_bench.py                          # 50 VMIs, 3 nodes, 5/2, 1 s
    .venv/bin/python bench/migration_drain_bench.py --cluster-limit 25       # the OpenShift scale-test setting
    .venv/bin/python bench/migration_drain_bench.py --per-node-limit 10      # the cluster limit (5) binds
    .venv/bin/python bench/migration_drain_bench.py --count 20 --delay 0.5 --json drain.json --logs drain-logs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.control_plane_services import ServiceTree, apply_test_node_file  # noqa: E402
from bench.migration_drain_figures import (  # noqa: E402
    FINAL_PHASES,
    compute_drain_figures,
    compute_ideal_seconds,
    compute_problems,
    compute_timeline,
)
from shared.natsserver import NatsServer  # noqa: E402
from shared.store import ObjectStore  # noqa: E402

PREFIX = "kvd_"
NS = "bench"
VMIS = "virtualmachineinstances"
VMIMS = "virtualmachineinstancemigrations"
NODES = "nodes"
KUBEVIRTS = "kubevirts"
DRAIN_TAINT = {"key": "kubevirt.io/drain", "effect": "NoSchedule"}


# -- the run --------------------------------------------------------------------------------------
def node_names(count: int) -> list[str]:
    return [f"drain-node-{i}" for i in range(count)]


def start(tree: ServiceTree, nats_url: str, tmp: Path, args: argparse.Namespace) -> dict[str, subprocess.Popen]:
    """The services' processes (stderr in ``tmp/logs``)."""
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = [("--nats", nats_url), ("--bucket-prefix", PREFIX), ("--log-level", "WARNING")]
    commands = {
        "virt-controller": tree.command("services.virt_controller.main", common + [("--id", "bench")]),
        "scheduler-bridge": tree.command("services.scheduler_bridge.main", common),
        "virt-migration": tree.command("services.virt_migration.main", common + [("--id", "bench")]),
    }
    for name in node_names(args.nodes):
        uri = apply_test_node_file(tmp / f"{name}.xml", cpus=64, memory_bytes=64 * 2**30)
        commands[name] = tree.command("services.virt_handler.main", common + [
            ("--node-name", name), ("--libvirt-uri", uri), ("--state-dir", str(tmp / name)),
            ("--stand-in-migration-seconds", str(args.delay))])
    procs = {}
    for name, argv in commands.items():
        with open(logs / f"{name}.stderr", "wb") as err:
            procs[name] = subprocess.Popen(argv, cwd=tree.path, env=tree.env(), stdout=subprocess.DEVNULL, stderr=err)
    return procs


def check_alive(procs: Mapping[str, subprocess.Popen], tmp: Path) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            tail = (tmp / "logs" / f"{name}.stderr").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


def stop(procs: Mapping[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def edit_node(store: ObjectStore, name: str, *, unschedulable: bool, taints: list[dict] | None = None) -> None:
    """Cordon/uncordon and set taints (CAS, retried against the handler's heartbeat)."""
    for _ in range(20):
        node = await store.get(NODES, None, name)
        spec = node.setdefault("spec", {})
        spec["unschedulable"] = unschedulable
        if taints is not None:
            spec["taints"] = taints
        try:
            await store.update(NODES, node, has_status_subresource=False, namespaced=False)
            return
        except Exception:  # noqa: BLE001 - Conflict with a heartbeat: read again
            await asyncio.sleep(0.05)
    raise RuntimeError(f"could not edit node {name}")


class Timeout(RuntimeError):
    """A wait of the scenario ran out of time."""


async def wait_for(check, what: str, timeout: float, procs, tmp) -> float:
    """Seconds until ``await check()`` is true (polled every 0.1 s). Raises :class:`Timeout` after
    ``timeout`` seconds, RuntimeError when a service exited."""
    began = time.monotonic()
    while True:
        check_alive(procs, tmp)
        if await check():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def make_vmi(name: str) -> dict:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS, "labels": {"bench": "b8"}},
            "spec": {"evictionStrategy": "LiveMigrate", "terminationGracePeriodSeconds": 0,
                     "domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}},
            "status": {"phase": "Pending"}}


async def scenario(store: ObjectStore, procs, tmp: Path, args: argparse.Namespace) -> dict:
    nodes = node_names(args.nodes)
    drained = nodes[0]
    await wait_for(lambda: _nodes_exist(store, nodes), "the Nodes", 60, procs, tmp)
    await store.create(KUBEVIRTS, {
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {"migrations": {"parallelMigrationsPerCluster": args.cluster_limit,
                                                  "parallelOutboundMigrationsPerNode": args.per_node_limit}}}})
    for name in nodes[1:]:
        await edit_node(store, name, unschedulable=True)
    names = [f"vmi-{i:03d}" for i in range(args.count)]
    await asyncio.gather(*(store.create(VMIS, make_vmi(n)) for n in names))
    boot = await wait_for(lambda: _all_running_on(store, names, {drained}), "the VMIs Running on the first node",
                          args.timeout, procs, tmp)
    for name in nodes[1:]:
        await edit_node(store, name, unschedulable=False)
    await asyncio.sleep(1.0)  # the bridge and virt-migration see the uncordoned nodes
    seen: dict[str, dict] = {}  # every VMIM by uid, latest state (finalized ones may be garbage-collected)

    async def watch() -> None:
        async for event in store.watch(VMIMS, NS):
            seen[event.object["metadata"]["uid"]] = event.object

    watcher = asyncio.get_running_loop().create_task(watch())
    load_before = [round(x, 2) for x in os.getloadavg()]
    tainted_at = time.time()
    await edit_node(store, drained, unschedulable=True, taints=[DRAIN_TAINT])
    drain: float | None = None
    try:
        drain = await wait_for(lambda: _drained(store, names, drained, seen), "the drain", args.timeout, procs, tmp)
    except Timeout:
        pass  # reported as a problem with the figures of what happened
    finally:
        await asyncio.sleep(0.3)
        watcher.cancel()
    vmis = (await store.list(VMIS, NS))[0]
    figures = compute_drain_figures(seen.values(), vmis, drained=drained)
    figures.update(compute_timeline(seen.values(), tainted_at))
    ideal = compute_ideal_seconds(args.count, cluster_limit=args.cluster_limit, per_node_limit=args.per_node_limit,
                                  drained_nodes=1, delay=args.delay)
    return {"count": args.count, "nodes": args.nodes, "cluster_limit": args.cluster_limit,
            "per_node_limit": args.per_node_limit, "delay_s": args.delay, "boot_s": round(boot, 2),
            "timeout_s": args.timeout, "drain_s": round(drain, 2) if drain is not None else None, "ideal_s": ideal,
            "drain_over_ideal": round(drain / ideal, 3) if drain is not None and ideal else None,
            **figures, "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


async def _nodes_exist(store, nodes) -> bool:
    items, _ = await store.list(NODES)
    return {n["metadata"]["name"] for n in items} >= set(nodes)


async def _all_running_on(store, names, allowed) -> bool:
    items, _ = await store.list(VMIS, NS)
    ok = [v for v in items if (v.get("status") or {}).get("phase") == "Running"
          and v["status"].get("nodeName") in allowed]
    return len(ok) == len(names)


async def _drained(store, names, drained, seen) -> bool:
    items, _ = await store.list(VMIS, NS)
    moved = [v for v in items if (v.get("status") or {}).get("phase") == "Running"
             and v["status"].get("nodeName") not in (None, drained)]
    final = all(((m.get("status") or {}).get("phase") in FINAL_PHASES) for m in seen.values())
    return len(moved) == len(names) and final


def report(result: dict) -> list[str]:
    """Print the figures; return the problems (empty: limits kept, every VMI moved)."""
    print(f"B8 node drain: {result['count']} VMIs off 1 of {result['nodes']} nodes, limits "
          f"{result['cluster_limit']} cluster / {result['per_node_limit']} per node, STAND-IN migration "
          f"(test driver, fixed {result['delay_s']} s each, no data moves)")
    drain = f"{result['drain_s']:.2f} s" if result["drain_s"] is not None else "NOT FINISHED"
    print(f"  drain {drain}   ideal {result['ideal_s']:.2f} s   ratio {result['drain_over_ideal']}   (goal <= 1.2)")
    print(f"  peak in flight: cluster {result['peak_cluster']} (limit {result['cluster_limit']}), per source node "
          f"{result['peak_per_source_node']} (limit {result['per_node_limit']})")
    print(f"  VMIMs {result['vmims']}: succeeded {result['succeeded']}, failed {result['failed']}, not final "
          f"{result['not_final']}; wasted {result['wasted_migrations']}, VMIs retried {result['retried_vmis']}, "
          f"left on the drained node {result['left_on_drained_node']}, not Running {result['not_running']}")
    if result["migration_p50_s"] is not None:
        print(f"  per migration (Pending -> Succeeded): p50 {result['migration_p50_s']:.2f} s, p95 "
              f"{result['migration_p95_s']:.2f} s, max {result['migration_max_s']:.2f} s")
    print(f"  after the taint: first VMIM Pending {result['first_pending_s']} s, last Pending "
          f"{result['last_pending_s']} s, first admitted {result['first_admitted_s']} s, last final "
          f"{result['last_final_s']} s")
    print("  median seconds per phase: " + ", ".join(f"{p} {s:.2f}" for p, s in result["phase_median_s"].items()))
    print(f"  load average before {result['loadavg_before']} after {result['loadavg_after']}")
    problems = compute_problems(result)
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    if not problems:
        print("  limits respected, every VMI moved")
    return problems


async def bench(args: argparse.Namespace) -> dict:
    tree = ServiceTree(Path(args.tree).resolve() if args.tree else ROOT, "tree")
    tree.check_isolation()
    with tempfile.TemporaryDirectory(prefix="drain-bench-") as name:
        tmp = Path(name)
        server = NatsServer(tmp / "nats")
        server.start()
        procs: dict[str, subprocess.Popen] = {}
        try:
            procs = start(tree, server.url, tmp, args)
            store = await ObjectStore.connect([server.url], bucket_prefix=PREFIX, name="drain-bench")
            try:
                result = await scenario(store, procs, tmp, args)
            finally:
                await store.close()
            check_alive(procs, tmp)
        finally:
            stop(procs)
            server.stop()
            if args.logs:
                shutil.copytree(tmp / "logs", args.logs, dirs_exist_ok=True)
    for note in dict.fromkeys(tree.notes):
        print(f"note: {note}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50, help="VMIs on the drained node")
    parser.add_argument("--nodes", type=int, default=3, help="nodes (the first one is drained)")
    parser.add_argument("--cluster-limit", type=int, default=5, help="parallelMigrationsPerCluster")
    parser.add_argument("--per-node-limit", type=int, default=2, help="parallelOutboundMigrationsPerNode")
    parser.add_argument("--delay", type=float, default=1.0, help="--stand-in-migration-seconds of the handlers")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up a phase after this many seconds")
    parser.add_argument("--tree", metavar="PATH", help="checkout whose services are measured (default: this one)")
    parser.add_argument("--logs", metavar="DIR", help="copy the services' stderr logs here at the end")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this file")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    problems = report(result)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "problems": problems}, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
