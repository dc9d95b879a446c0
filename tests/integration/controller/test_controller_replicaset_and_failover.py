"""Replica set scaling, and leader failover by kill -9 of the leading virt-controller process."""
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from controller_harness import (
    NS, VMIS, VMS, SimulatedNodeAgents, make_vm, running, running_manager, update_vmi_status, wait_for,
)
from shared.errors import NotFound
from shared.natsserver import pick_free_port

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[3]
RS = "virtualmachineinstancereplicasets"


def make_replica_set(name, replicas):
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"rs": name}},
            "template": {"metadata": {"labels": {"rs": name}},
                         "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}},
        },
    }


async def live_vmis(store, rs_name):
    items, _ = await store.list(VMIS, NS, label_selector=f"rs={rs_name}")
    return [v for v in items if not v["metadata"].get("deletionTimestamp")
            and (v.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


async def scale(store, name, replicas):
    rs = await store.get(RS, NS, name)
    rs["spec"]["replicas"] = replicas
    await store.update(RS, rs)


async def converged(store, name, count):
    vmis = await live_vmis(store, name)
    rs = await store.get(RS, NS, name)
    status = rs.get("status") or {}
    ok = len(vmis) == count and status.get("replicas") == count and status.get("readyReplicas") == count
    return ok and all((v.get("status") or {}).get("phase") == "Running" for v in vmis)


async def test_replica_set_scaled_0_5_2_converges_to_exactly_that_many_vmis(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        await store.create(RS, make_replica_set("web", 0))
        await wait_for(lambda: converged(store, "web", 0), what="0 replicas")
        await scale(store, "web", 5)
        await wait_for(lambda: converged(store, "web", 5), what="5 replicas")
        vmis = await live_vmis(store, "web")
        rs = await store.get(RS, NS, "web")
        assert all(v["metadata"]["name"].startswith("web") for v in vmis)
        assert all(v["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for v in vmis)
        await scale(store, "web", 2)
        await wait_for(lambda: converged(store, "web", 2), what="2 replicas")
        await asyncio.sleep(0.5)  # and stays there
        assert len(await live_vmis(store, "web")) == 2
        assert (await store.get(RS, NS, "web"))["status"]["labelSelector"] == "rs=web"
    await agents.stop()


async def test_a_replaced_final_vmi_keeps_the_count(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        await store.create(RS, make_replica_set("job", 2))
        await wait_for(lambda: converged(store, "job", 2), what="2 replicas")
        victim = (await live_vmis(store, "job"))[0]["metadata"]["name"]
        from controller_harness import final
        await update_vmi_status(store, victim, final("Failed"))
        await wait_for(lambda: converged(store, "job", 2), what="replaced")
        assert victim not in {v["metadata"]["name"] for v in await live_vmis(store, "job")}
    await agents.stop()


def start_controller(nats_url, prefix, identity, tmp_path, health_port):
    log = open(tmp_path / f"{identity}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "services.virt_controller.main", "--nats", nats_url, "--id", identity,
         "--bucket-prefix", prefix, "--lease-duration", "2", "--renew-deadline", "1.5", "--retry-period", "0.25",
         "--workers", "2", "--health-port", str(health_port), "--state-dir", str(tmp_path / identity)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def leader_flag(port):
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/leader") as resp:
                return (await resp.json())["leader"]
    except aiohttp.ClientError:
        return None


async def lease_holder(store):
    try:
        lease = await store.get("leases", "kubevirt", "virt-controller")
    except NotFound:
        return None
    return lease["spec"].get("holderIdentity") or None


async def test_kill_9_of_the_leader_mid_start_standby_takes_over_and_the_vm_runs_once(nats_server, object_store,
                                                                                     tmp_path):
    store = object_store
    agents = SimulatedNodeAgents(store, auto_run=False)
    await agents.start()
    uids: set[str] = set()

    async def record_vmis():
        async for event in store.watch(VMIS, NS):
            uids.add(event.object["metadata"]["uid"])

    recorder = asyncio.create_task(record_vmis())
    ports = {"ctl-a": pick_free_port(), "ctl-b": pick_free_port()}
    procs = {name: start_controller(nats_server.url, store.prefix, name, tmp_path, ports[name]) for name in ports}
    try:
        leader = await wait_for(lambda: lease_holder(store), timeout=20, what="a leader")
        standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
        assert await wait_for(lambda: leader_flag(ports[leader]), timeout=10, what="leader's /leader")
        assert await wait_for(lambda: _eq(leader_flag(ports[standby]), False), timeout=10, what="standby's /leader")
        await store.create(VMS, make_vm("ha", run_strategy="Always"))
        await wait_for(lambda: _phase_is(store, "ha", "Scheduled"), timeout=20, what="VMI Scheduled")
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(5)
        await update_vmi_status(store, "ha", running)  # the guest comes up while nobody leads
        await wait_for(lambda: _eq(lease_holder(store), standby), timeout=20, what="standby takes the lease")
        await wait_for(lambda: _printable_is(store, "ha", "Running"), timeout=20, what="VM Running")
        await asyncio.sleep(0.5)
        assert len(uids) == 1, f"VMIs created: {uids}"
        vm = await store.get(VMS, NS, "ha")
        assert vm["status"]["ready"] is True
    finally:
        recorder.cancel()
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await agents.stop()


async def _eq(coro, value):
    return (await coro) == value


async def _phase_is(store, name, phase):
    return ((await store.get(VMIS, NS, name)).get("status") or {}).get("phase") == phase


async def _printable_is(store, name, value):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus") == value
