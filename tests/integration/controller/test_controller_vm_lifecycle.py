"""The VM controller against a real nats-server: run strategies, printableStatus, writes."""
import asyncio

import pytest

from controller_harness import (
    NS, VMIS, VMS, PrintableStatusRecorder, SimulatedNodeAgents, make_vm, running_manager, wait_for,
)

pytestmark = pytest.mark.timeout(60)


async def vm_status(store, name):
    return (await store.get(VMS, NS, name)).get("status") or {}


async def printable(store, name):
    return (await vm_status(store, name)).get("printableStatus")


async def test_always_vm_starts_runs_and_stops_through_kubevirts_printable_statuses(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    recorder = PrintableStatusRecorder(store, "vm1")
    recorder.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("vm1"))
        await wait_for(lambda: _eq(printable(store, "vm1"), "Running"), what="Running")
        vmi = await store.get(VMIS, NS, "vm1")
        ref = vmi["metadata"]["ownerReferences"][0]
        vm = await store.get(VMS, NS, "vm1")
        assert ref == {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "vm1",
                       "uid": vm["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        assert vmi["metadata"]["labels"] == {"app": "vm1", "kubevirt.io/vm": "vm1"}
        assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == \
            ["Pending", "Scheduling", "Scheduled", "Running"]
        status = vm["status"]
        assert status["created"] is True and status["ready"] is True
        assert status["runStrategy"] == "Always"
        # stop: virtctl stop on Always rewrites the strategy to Halted
        vm["spec"]["runStrategy"] = "Halted"
        await store.update(VMS, vm)
        await wait_for(lambda: _eq(printable(store, "vm1"), "Stopped"), what="Stopped")
        await wait_for(lambda: _gone(store, VMIS, "vm1"), what="VMI removed")
        await asyncio.sleep(0.2)
    await recorder.stop()
    await agents.stop()
    assert recorder.seen == ["Starting", "Running", "Stopping", "Stopped"]
    final_status = await vm_status(store, "vm1")
    assert "created" not in final_status and "ready" not in final_status
    ready = [c for c in final_status["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("False", "VMINotExists")


async def _eq(coro, value):
    return (await coro) == value


async def _gone(store, plural, name):
    try:
        await store.get(plural, NS, name)
    except Exception as err:  # NotFound
        return type(err).__name__ == "NotFound"
    return False


async def test_deleting_a_vm_shows_terminating_until_its_guest_stopped_then_both_are_gone(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store, auto_run=True)
    await agents.start()
    recorder = PrintableStatusRecorder(store, "vm2")
    recorder.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("vm2"))
        await wait_for(lambda: _eq(printable(store, "vm2"), "Running"), what="Running")
        vm = await store.get(VMS, NS, "vm2")
        assert vm["metadata"]["finalizers"] == ["kubevirt.io/virtualMachineControllerFinalize"]
        deleting = await store.delete(VMS, NS, "vm2")
        assert deleting["metadata"]["deletionTimestamp"]
        await wait_for(lambda: _gone(store, VMS, "vm2"), what="VM removed")
        await wait_for(lambda: _gone(store, VMIS, "vm2"), what="VMI removed")
    await recorder.stop()
    await agents.stop()
    assert recorder.seen == ["Starting", "Running", "Terminating"]


async def test_a_vm_never_takes_over_a_vmi_it_does_not_control(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        bare = make_vm("solo")["spec"]["template"]
        await store.create(VMIS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                  "metadata": {"name": "solo", "namespace": NS}, "spec": bare["spec"]})
        await store.create(VMS, make_vm("solo"))

        async def failure():
            conds = ((await store.get(VMS, NS, "solo")).get("status") or {}).get("conditions") or []
            return [c for c in conds if c["type"] == "Failure"]
        cond = (await wait_for(failure, what="Failure condition"))[0]
        assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
        assert "not controlled by this VM" in cond["message"]
        await store.delete(VMIS, NS, "solo")
        await wait_for(lambda: _eq(printable(store, "solo"), "Running"), what="own VMI Running")
        vm = await store.get(VMS, NS, "solo")
        vmi = await store.get(VMIS, NS, "solo")
        assert vmi["metadata"]["ownerReferences"][0]["uid"] == vm["metadata"]["uid"]
        assert "Failure" not in {c["type"] for c in vm["status"]["conditions"]}
    await agents.stop()
