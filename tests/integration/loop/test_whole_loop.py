"""The whole control loop: virt-controller, scheduler-bridge and virt-handler (libvirt's test
driver) converge VirtualMachines over a real nats-server, as KubeVirt's users expect."""

from __future__ import annotations

import pytest
from loop_helpers import (
    GI,
    NS,
    VMIS,
    VMS,
    InProcessNode,
    conditions_of,
    get_or_none,
    make_vm,
    phase_of,
    printable_status,
    wait_until,
)

from services.virt_api import lifecycle

pytestmark = pytest.mark.timeout(120)


async def vm_status_is(store, name, value):
    vm = await get_or_none(store, VMS, name)
    return vm if printable_status(vm) == value else None


async def running_vmi(store, name, *, other_than=None):
    vmi = await get_or_none(store, VMIS, name)
    if phase_of(vmi) == "Running" and vmi["metadata"]["uid"] != other_than:
        return vmi
    return None


async def domain_gone(node, name):
    return await node.hypervisor.get_domain(f"{NS}_{name}") is None


async def test_a_vm_runs_as_a_domain_and_stopping_removes_it(object_store, controller, bridge, node):
    await object_store.create(VMS, make_vm("web"))
    await wait_until(lambda: vm_status_is(object_store, "web", "Running"))
    vmi = await get_or_none(object_store, VMIS, "web")
    assert vmi["status"]["nodeName"] == "node-small"
    assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == "node-small"
    assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == \
        ["Pending", "Scheduling", "Scheduled", "Running"]
    domain = await node.hypervisor.get_domain("default_web")
    assert (domain.state, domain.uid) == ("Running", vmi["metadata"]["uid"])

    await lifecycle.stop_vm(object_store, NS, "web")
    await wait_until(lambda: vm_status_is(object_store, "web", "Stopped"))
    await wait_until(lambda: domain_gone(node, "web"))
    await wait_until(lambda: _absent(object_store, "web"))


async def _absent(store, name):
    return await get_or_none(store, VMIS, name) is None


async def test_a_vm_too_big_for_every_node_is_unschedulable_until_a_big_node_registers(
        object_store, controller, bridge, node, tmp_path):
    await object_store.create(VMS, make_vm("big", memory="8Gi"))
    await wait_until(lambda: vm_status_is(object_store, "big", "ErrorUnschedulable"))
    # The bridge may first have seen no node at all; it corrects the message once it sees node-small.
    vmi = await wait_until(lambda: _scheduling_message_is(object_store, "big",
                                                          "0/1 nodes are available: 1 Insufficient memory."))
    scheduled = conditions_of(vmi)["PodScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert printable_status(await get_or_none(object_store, VMS, "big")) == "ErrorUnschedulable"

    big = await InProcessNode(object_store, "node-big", tmp_path, cpus=8, memory_bytes=16 * GI).start()
    try:
        await wait_until(lambda: vm_status_is(object_store, "big", "Running"))
        vmi = await get_or_none(object_store, VMIS, "big")
        assert vmi["status"]["nodeName"] == "node-big"
        assert "PodScheduled" not in conditions_of(vmi)
        assert (await big.hypervisor.get_domain("default_big")).state == "Running"
    finally:
        await lifecycle.stop_vm(object_store, NS, "big")
        await wait_until(lambda: domain_gone(big, "big"))
        await big.close()


async def _scheduling_message_is(store, name, message):
    vmi = await get_or_none(store, VMIS, name)
    return vmi if conditions_of(vmi).get("PodScheduled", {}).get("message") == message else None


@pytest.mark.parametrize("strategy, guest_action, expected", [
    pytest.param("Always", "shutdown", "restarted", id="always-restarts-after-clean-shutdown"),
    pytest.param("RerunOnFailure", "shutdown", "stopped", id="rerunonfailure-stays-down-after-clean-shutdown"),
    pytest.param("RerunOnFailure", "destroy", "restarted", id="rerunonfailure-restarts-after-crash"),
    pytest.param("Manual", "shutdown", "stopped", id="manual-stays-down"),
])
async def test_run_strategies_react_to_what_the_guest_did(object_store, controller, bridge, node,
                                                         strategy, guest_action, expected):
    await object_store.create(VMS, make_vm("app", run_strategy=strategy))
    if strategy == "Manual":
        await lifecycle.start_vm(object_store, NS, "app")
    first = await wait_until(lambda: running_vmi(object_store, "app"))
    # What the guest does behind the handler's back: power off cleanly, or die (destroy = crash).
    await getattr(node.hypervisor, guest_action)("default_app")
    if expected == "restarted":
        second = await wait_until(lambda: running_vmi(object_store, "app", other_than=first["metadata"]["uid"]))
        assert (await node.hypervisor.get_domain("default_app")).uid == second["metadata"]["uid"]
    else:
        await wait_until(lambda: vm_status_is(object_store, "app", "Stopped"))
        await wait_until(lambda: domain_gone(node, "app"))
        left = await get_or_none(object_store, VMIS, "app")
        assert left is None or phase_of(left) in ("Succeeded", "Failed")  # no new VMI was started


async def test_halted_vm_has_no_vmi_and_no_domain(object_store, controller, bridge, node):
    await object_store.create(VMS, make_vm("idle", run_strategy="Halted"))
    await wait_until(lambda: vm_status_is(object_store, "idle", "Stopped"))
    assert await get_or_none(object_store, VMIS, "idle") is None
    assert [d.name for d in await node.hypervisor.list_domains()] == []


async def test_a_restarted_handler_reports_running_again_without_restarting_guests(
        object_store, controller, bridge, node):
    await object_store.create(VMS, make_vm("steady"))
    before = await wait_until(lambda: running_vmi(object_store, "steady"))
    domain_before = await node.hypervisor.get_domain("default_steady")
    await node.stop_agent()  # the handler dies; libvirt and the guest go on
    await node.start(hypervisor=node.hypervisor)
    await wait_until(lambda: node.agent.synced.is_set())
    after = await wait_until(lambda: running_vmi(object_store, "steady"))
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    domain_after = await node.hypervisor.get_domain("default_steady")
    assert domain_after.domain_id == domain_before.domain_id  # same running guest, never restarted
    assert printable_status(await get_or_none(object_store, VMS, "steady")) == "Running"
