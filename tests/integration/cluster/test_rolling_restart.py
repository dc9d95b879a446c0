"""A rolling restart of every control-plane process (2 replicas each; SIGTERM, then start, one at
a time) while clients churn VMs through both virt-api replicas: the clients see only retriable
errors (a refused or dropped connection to one replica, retried on the other; 429/5xx with
Retry-After), and everything converges: every VM's final state is the client's last acknowledged
intent, each VM that should run runs once (one VMI, one running domain), the others run nowhere.
Handlers run on private libvirt daemons serving the test driver, so the test sees their domains."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from churn import ChurnLog, FailoverClient, churn
from cluster_processes import NS, Cluster
from convergence import wait_converged
from history_check import check_history
from shared.store import ObjectStore

pytestmark = pytest.mark.timeout(420)

CONTROL_PLANE = ("virt-api", "virt-controller", "scheduler-bridge", "virt-migration", "virt-snapshot")
CLIENTS = 3


async def test_rolling_restart_of_the_control_plane_during_vm_churn(nats_server, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    store = await ObjectStore.connect([nats_server.url], bucket_prefix=prefix)
    cluster = Cluster(tmp_path, [nats_server.url], prefix)
    cluster.add_api(2)
    for service in CONTROL_PLANE[1:]:
        cluster.add_leader_elected(service, 2)
    for node in ("node-a", "node-b"):
        cluster.add_handler(node, daemon=True)
    log = ChurnLog()
    stop = asyncio.Event()
    restarts: list[tuple[str, float]] = []
    try:
        cluster.start_all()
        await cluster.wait_healthy()
        async with FailoverClient(cluster.api_urls, cluster.api_token) as api:
            clients = [asyncio.create_task(churn(f"c{i}", api, log, stop, namespace=NS, seed=i))
                       for i in range(CLIENTS)]
            await asyncio.sleep(3)  # churn before the first restart
            for service in CONTROL_PLANE:
                for replica in cluster.of(service):
                    began = time.monotonic()
                    await asyncio.to_thread(replica.terminate, 30)
                    replica.start()
                    await cluster.wait_healthy([replica])
                    restarts.append((replica.name, time.monotonic() - began))
                    await asyncio.sleep(1)  # churn on the restarted replica before the next
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*clients)
        final = await wait_converged(store, cluster, 120)
    finally:
        stop.set()
        cluster.stop_all()
        await store.close()
    verdict = check_history(log.operations, final)
    print(f"restarts (s): {[(n, round(t, 1)) for n, t in restarts]}; operations: {len(log.operations)} "
          f"({verdict.acknowledged} acknowledged, {verdict.indeterminate} indeterminate); retried: "
          f"{dict(api.retried)}; VMs at the end: {len(final.values)}")
    assert [n for n, _ in restarts] == [r.name for s in CONTROL_PLANE for r in cluster.of(s)]
    assert not api.problems, api.problems
    assert not log.unexpected, log.unexpected
    assert verdict.indeterminate == 0, "every operation got an answer"
    assert verdict.valid, verdict
    assert verdict.acknowledged >= 60 and len(final.values) > 0
    assert sum(api.retried.values()) > 0, "the restarts were seen by the clients (and retried)"
    should_run = sorted(k for k, v in final.values.items() if v.startswith("Always|"))
    assert sorted(g.key for g in final.guests if g.active) == should_run, "each running VM has one running domain"
