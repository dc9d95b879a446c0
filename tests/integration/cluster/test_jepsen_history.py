"""Jepsen-style history test: clients create, update and delete VMs through both virt-api replicas
while the NATS stream leader of the VM bucket, then the JetStream meta leader, are killed (-9,
found from nats-server's /jsz) and restarted, and a host is partitioned for 30 s. The client-side
history (:mod:`history_check`) against the final state: 0 acknowledged writes lost, 0 deleted
objects back, 0 VMs with two VMIs or two running domains (sampled all along, not only at the end);
and the API serves a write again within 10 s of each kill.

Topology on one machine: a bridge with two hosts (network namespaces, ``shared.netns``), each
running a virt-handler on a private libvirtd serving the test driver; a 3-node NATS cluster
(JetStream R3, ``--store-replicas 3``) listening on the bridge's address; the control plane (2
replicas of each service) beside it. Partitioning host1 cuts its handler off the store: it fences
itself after --fence-after, its VMIs are declared Failed after --heartbeat-timeout and restarted
on host2."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections import defaultdict

import pytest

from churn import ChurnLog, FailoverClient, GaveUp, churn, vm_body
from cluster_processes import NS, Cluster
from convergence import wait_converged
from history_check import check_history
from shared import netns
from shared.natsserver import NatsCluster
from shared.store import ObjectStore

pytestmark = pytest.mark.timeout(600)

PROBE_NS = "probes"
#: handlers beat every second and fence after 6 s; the controller fails their VMIs after 12 s
HANDLER_TIMING = ["--heartbeat-interval", "1", "--fence-after", "6"]
CONTROLLER_TIMING = ["--heartbeat-timeout", "12", "--fence-margin", "4"]
SERVE_WITHIN = 10.0
PARTITION_SECONDS = 30.0


def jsz(server, query: str = "") -> dict:
    """nats-server's JetStream monitoring (``/jsz``) of one cluster node."""
    with urllib.request.urlopen(f"http://{server.http_host}:{server.http_port}/jsz{query}", timeout=2) as resp:
        return json.loads(resp.read())


def meta_leader(cluster: NatsCluster) -> str:
    """Server name of the JetStream meta leader (asked of a running node)."""
    for node in cluster.nodes:
        if node.is_running():
            leader = (jsz(node).get("meta_cluster") or {}).get("leader")
            if leader:
                return leader
    raise AssertionError("no meta leader")


def stream_leader(cluster: NatsCluster, stream: str) -> str:
    """Server name of the leader of ``stream``."""
    for node in cluster.nodes:
        if not node.is_running():
            continue
        for account in jsz(node, "?accounts=true&streams=true").get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream and (detail.get("cluster") or {}).get("leader"):
                    return detail["cluster"]["leader"]
    raise AssertionError(f"no leader of stream {stream}")


class WriteProbe:
    """Starts a small create every 0.25 s (each in its own task, so a hung one does not hold the
    next) and records (start, end, acknowledged)."""

    def __init__(self, api: FailoverClient) -> None:
        self.api = api
        self.results: list[tuple[float, float, bool]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while True:
            n += 1
            task = asyncio.get_running_loop().create_task(self._probe(n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.25)

    async def _probe(self, n: int) -> None:
        start = time.monotonic()
        try:
            reply = await self.api.call("POST", f"/apis/kubevirt.io/v1/namespaces/{PROBE_NS}/virtualmachines",
                                        vm_body(f"probe-{n}", PROBE_NS, "Halted", str(n)))
            ok = reply.status in (200, 201)
        except GaveUp:
            ok = False
        self.results.append((start, time.monotonic(), ok))

    def served_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` until a write started after it was acknowledged."""
        ends = [end for start, end, ok in self.results if ok and start >= moment]
        return min(ends) - moment if ends else None

    async def stop(self) -> None:
        self.runner.cancel()
        for task in [self.runner, *self.tasks]:
            task.cancel()
        await asyncio.gather(self.runner, *self.tasks, return_exceptions=True)


class GuestSampler:
    """Reads every node's domains every 0.5 s; remembers each moment a VM ran twice."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples = 0
        self.twice: list[str] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            running: dict[str, list[str]] = defaultdict(list)
            for guest in await self.cluster.guests():
                if guest.active:
                    running[guest.key].append(f"{guest.node}:{guest.uid}")
            self.samples += 1
            self.twice += [f"{key} on {where}" for key, where in running.items() if len(where) > 1]
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def kill_and_restart(nats: NatsCluster, server_name: str, probe: WriteProbe) -> float:
    """kill -9 the node named ``server_name``; seconds until the API acknowledged a write again;
    then start it again (same ports and data) and wait until it is healthy."""
    node = next(n for n in nats.nodes if n.server_name == server_name)
    node.stop(kill=True)
    killed = time.monotonic()
    while (served := probe.served_after(killed)) is None and time.monotonic() - killed < 3 * SERVE_WITHIN:
        await asyncio.sleep(0.1)
    await asyncio.to_thread(node.start, 30.0)
    return served if served is not None else float("inf")


async def test_history_of_vm_writes_through_nats_leader_kills_and_a_host_partition(tmp_path):
    key = uuid.uuid4().hex[:6]
    plan = netns.compute_network_plan(key, 2, taken=netns.read_taken_networks())
    netns.apply_network(plan)
    nats = NatsCluster(tmp_path / "nats", size=3, host=str(plan.bridge_address))
    cluster: Cluster | None = None
    store: ObjectStore | None = None
    try:
        nats.start()
        prefix = f"t{uuid.uuid4().hex[:10]}_"
        cluster = Cluster(tmp_path, nats.urls, prefix)
        cluster.add_api(2)
        for service in ("virt-controller", "scheduler-bridge", "virt-migration", "virt-snapshot"):
            extra = CONTROLLER_TIMING if service == "virt-controller" else []
            if service == "scheduler-bridge":
                extra = ["--heartbeat-timeout", "12"]
            cluster.add_leader_elected(service, 2, ["--store-replicas", "3", *extra])
        for replica in cluster.of("virt-api"):
            replica.argv += ["--store-replicas", "3"]
        for host in plan.hosts:
            cluster.add_handler(host.name, ["--store-replicas", "3", *HANDLER_TIMING], daemon=True, host=host)
        cluster.start_all()
        await cluster.wait_healthy()
        store = await ObjectStore.connect(nats.urls, bucket_prefix=prefix, replicas=3)
        await _wait_nodes(store, [h.name for h in plan.hosts])
        log, stop = ChurnLog(), asyncio.Event()
        sampler = GuestSampler(cluster)
        async with FailoverClient(cluster.api_urls, cluster.api_token) as api:
            probe = WriteProbe(api)
            clients = [asyncio.create_task(churn(f"c{i}", api, log, stop, namespace=NS, seed=i, pause=0.3))
                       for i in range(3)]
            await asyncio.sleep(5)
            served = {"stream leader": await kill_and_restart(
                nats, stream_leader(nats, f"KV_{prefix}virtualmachines"), probe)}
            await asyncio.sleep(3)
            served["meta leader"] = await kill_and_restart(nats, meta_leader(nats), probe)
            await asyncio.sleep(3)
            await asyncio.to_thread(netns.apply_partition, plan, "host1")
            await asyncio.sleep(PARTITION_SECONDS)
            await asyncio.to_thread(netns.apply_heal, plan, "host1")
            await asyncio.sleep(5)
            stop.set()
            await asyncio.gather(*clients)
            await probe.stop()
        final = await wait_converged(store, cluster, 150)
        await sampler.stop()
        fenced = await _events(store, "SelfFenced") + await _events(store, "NodeUnresponsive")
    finally:
        if store is not None:
            await store.close()
        if cluster is not None:
            cluster.stop_all()
        nats.stop(kill=True)
        netns.apply_remove_network(plan)
    verdict = check_history(log.operations, final)
    print(f"operations {len(log.operations)} ({verdict.acknowledged} acknowledged, {verdict.indeterminate} "
          f"indeterminate); API served a write again after {served}; retried {dict(api.retried)}; "
          f"{sampler.samples} guest samples; node-loss events {fenced}; VMs at the end {len(final.values)}")
    assert verdict.valid, verdict
    assert not sampler.twice, f"a VM ran twice: {sampler.twice[:5]}"
    for what, seconds in served.items():
        assert seconds <= SERVE_WITHIN, f"the API served a write {seconds:.1f}s after the kill of the {what}"
    assert not api.problems, api.problems
    assert verdict.acknowledged >= 100
    assert fenced > 0, "the partition cut host1's guests off: fenced and declared lost (SelfFenced/NodeUnresponsive)"


async def _wait_nodes(store, names):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes, _ = await store.list("nodes", None)
        if {n["metadata"]["name"] for n in nodes} >= set(names):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"nodes {names} did not register")


async def _events(store, reason):
    events, _ = await store.list("events", NS)
    return sum(1 for e in events if e["reason"] == reason)
