"""VirtualMachinePool: N VMs named <pool>-<index>, each run by the VM controller."""
import pytest

from controller_harness import NS, VMS, SimulatedNodeAgents, make_vm, running_manager, wait_for

pytestmark = pytest.mark.timeout(60)
POOLS = "virtualmachinepools"


def make_pool(name, replicas):
    template = make_vm("unused", run_strategy="Always", labels={"pool": name})
    return {"apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"pool": name}},
                     "virtualMachineTemplate": {"metadata": {"labels": {"pool": name}}, "spec": template["spec"]}}}


async def pool_vms(store, name):
    items, _ = await store.list(VMS, NS, label_selector=f"pool={name}")
    return sorted(vm["metadata"]["name"] for vm in items if not vm["metadata"].get("deletionTimestamp"))


async def settled(store, name, names):
    pool = await store.get(POOLS, NS, name)
    status = pool.get("status") or {}
    return await pool_vms(store, name) == names and status.get("readyReplicas") == len(names) \
        and status.get("replicas") == len(names)


async def scale(store, name, replicas):
    pool = await store.get(POOLS, NS, name)
    pool["spec"]["replicas"] = replicas
    await store.update(POOLS, pool)


async def test_pool_scales_0_3_1_with_indexed_names_and_running_vms(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        await store.create(POOLS, make_pool("web", 0))
        await wait_for(lambda: settled(store, "web", []), what="empty pool")
        await scale(store, "web", 3)
        await wait_for(lambda: settled(store, "web", ["web-0", "web-1", "web-2"]), what="3 ready VMs")
        vm = await store.get(VMS, NS, "web-1")
        pool = await store.get(POOLS, NS, "web")
        assert vm["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
        assert vm["status"]["printableStatus"] == "Running"
        await scale(store, "web", 1)
        await wait_for(lambda: settled(store, "web", ["web-0"]), what="1 VM left")
        assert (await store.get(POOLS, NS, "web"))["status"]["labelSelector"] == "pool=web"
    await agents.stop()
