"""The handler's VMI sync loop against a real nats-server store and libvirt's test driver."""

from __future__ import annotations

import asyncio

import pytest
from handler_helpers import VMIS, conditions_of, get_vmi, make_vmi, phase_of, wait_until

from services.virt_handler.agent import VmiAgent
from shared import events


async def running_vmi(store, name="vm1", **kwargs):
    await store.create(VMIS, make_vmi(name, **kwargs))
    return await wait_until(lambda: _in_phase(store, name, "Running"))


async def _in_phase(store, name, phase):
    vmi = await get_vmi(store, name)
    return vmi if phase_of(vmi) == phase else None


async def test_a_scheduled_vmi_becomes_a_running_domain(object_store, hypervisor, agent):
    vmi = await running_vmi(object_store)
    domain = await hypervisor.get_domain("default_vm1")
    assert (domain.state, domain.uid) == ("Running", vmi["metadata"]["uid"])
    ready = conditions_of(vmi)["Ready"]
    assert ready["status"] == "True"
    assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == ["Scheduled", "Running"]
    assert (agent.config.state_dir / "vmis" / vmi["metadata"]["uid"] / "vmi.json").exists()


@pytest.mark.parametrize("start_strategy", [None, "Paused"], ids=["running", "started-paused"])
async def test_the_first_running_write_says_whether_the_vmi_can_migrate(object_store, hypervisor, agent,
                                                                      start_strategy):
    # The starting sync is the only one until the guest refresh (30 s): without LiveMigratable in
    # that write a fresh VMI could not be evacuated or migrated for 30 s (bench B8 saw 28 s).
    vmi = await running_vmi(object_store, start_strategy=start_strategy)
    migratable = conditions_of(vmi)["LiveMigratable"]
    assert (migratable["status"], vmi["status"]["migrationMethod"]) == ("True", "LiveMigration")
    assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == ["Scheduled", "Running"]


async def test_vmis_of_other_nodes_are_left_alone(object_store, hypervisor, agent):
    await object_store.create(VMIS, make_vmi("elsewhere", node="node2"))
    await running_vmi(object_store, "mine")
    assert [d.name for d in await hypervisor.list_domains()] == ["default_mine"]
    assert phase_of(await get_vmi(object_store, "elsewhere")) == "Scheduled"


@pytest.mark.parametrize("stop, expected_phase", [
    pytest.param("shutdown", "Succeeded", id="clean-guest-shutdown-succeeds"),
    pytest.param("destroy", "Failed", id="guest-killed-with-acpi-fails"),
])
async def test_a_guest_that_stops_ends_its_vmi_and_leaves_nothing(object_store, hypervisor, agent, stop,
                                                                   expected_phase):
    vmi = await running_vmi(object_store)
    await getattr(hypervisor, stop)("default_vm1")  # what the guest (or a crash) does, behind the handler
    final = await wait_until(lambda: _in_phase(object_store, "vm1", expected_phase))
    assert conditions_of(final)["Ready"]["reason"] == "GuestNotRunning"
    await wait_until(lambda: _domain_absent(hypervisor, "default_vm1"))
    await wait_until(lambda: not (agent.config.state_dir / "vmis" / vmi["metadata"]["uid"]).exists())


async def _domain_absent(hypervisor, name):
    return await hypervisor.get_domain(name) is None


async def test_deleting_a_vmi_shuts_its_guest_down_then_reports_the_outcome(object_store, hypervisor, agent):
    await running_vmi(object_store, finalizers=["kubevirt.io/foregroundDeleteVirtualMachine"], grace=30)
    await object_store.delete(VMIS, "default", "vm1")
    final = await wait_until(lambda: _in_phase(object_store, "vm1", "Succeeded"))  # ACPI shutdown honoured
    assert final["metadata"]["deletionTimestamp"]
    await wait_until(lambda: _domain_absent(hypervisor, "default_vm1"))
    final["metadata"]["finalizers"] = []  # what virt-controller does next
    await object_store.update(VMIS, final)
    assert await get_vmi(object_store, "vm1") is None


async def test_a_vmi_removed_outright_loses_its_domain(object_store, hypervisor, agent):
    await running_vmi(object_store)
    await object_store.delete(VMIS, "default", "vm1")
    await wait_until(lambda: _domain_absent(hypervisor, "default_vm1"))


async def test_grace_zero_destroys_at_once_and_counts_as_failure(object_store, hypervisor, agent):
    await running_vmi(object_store, finalizers=["kubevirt.io/foregroundDeleteVirtualMachine"], grace=0)
    await object_store.delete(VMIS, "default", "vm1")
    await wait_until(lambda: _in_phase(object_store, "vm1", "Failed"))


async def test_start_paused_reports_paused_by_user(object_store, hypervisor, agent):
    vmi = await running_vmi(object_store, start_strategy="Paused")
    assert conditions_of(vmi)["Paused"]["reason"] == "PausedByUser"
    assert (await hypervisor.get_domain("default_vm1")).state == "Paused"


async def command(store, message):
    reply = await store.bus.request(events.handler_command_subject("node1"), events.encode(message), timeout=5)
    return events.decode_command_result(reply.data)


async def test_pause_unpause_and_softreboot_commands(object_store, hypervisor, agent):
    vmi = await running_vmi(object_store)
    uid = vmi["metadata"]["uid"]
    assert (await command(object_store, events.Pause(namespace="default", name="vm1", uid=uid))).ok
    paused = await wait_until(lambda: _with_condition(object_store, "Paused"))
    assert conditions_of(paused)["Paused"]["message"] == "VMI was paused by user"
    assert conditions_of(paused)["Ready"]["status"] == "False"
    rebooted = await command(object_store, events.SoftReboot(namespace="default", name="vm1"))
    assert (rebooted.code, rebooted.message) == (409, "VMI is paused")
    assert (await command(object_store, events.Unpause(namespace="default", name="vm1"))).ok
    await wait_until(lambda: _without_condition(object_store, "Paused"))
    assert (await command(object_store, events.SoftReboot(namespace="default", name="vm1"))).ok
    assert (await hypervisor.get_domain("default_vm1")).state == "Running"


async def _with_condition(store, ctype):
    vmi = await get_vmi(store, "vm1")
    return vmi if ctype in conditions_of(vmi) else None


async def _without_condition(store, ctype):
    vmi = await get_vmi(store, "vm1")
    return vmi if ctype not in conditions_of(vmi) else None


@pytest.mark.parametrize("message, expected_code", [
    pytest.param(events.Pause(namespace="default", name="nope"), 404, id="unknown-vmi"),
    pytest.param(events.Pause(namespace="default", name="vm1", uid="other"), 404, id="stale-uid"),
])
async def test_commands_for_vmis_not_here_are_refused(object_store, agent, message, expected_code):
    await running_vmi(object_store)
    assert (await command(object_store, message)).code == expected_code


async def test_a_missing_image_shows_errimagepull_then_backoff(object_store, hypervisor, agent):
    vmi = make_vmi(disks=[{"name": "root", "disk": {"bus": "virtio"}}],
                   volumes=[{"name": "root", "containerDisk": {"image": "example.org/not-imported:latest"}}])
    created = await object_store.create(VMIS, vmi)
    reasons, messages = [], []

    async def follow():
        async for event in object_store.watch(VMIS, resource_version=created["metadata"]["resourceVersion"]):
            cond = conditions_of(event.object).get("Synchronized")
            if cond and (not reasons or reasons[-1] != cond["reason"]):
                reasons.append(cond["reason"])
                messages.append(cond["message"])
            if "ImagePullBackOff" in reasons:
                return event.object

    later = await asyncio.wait_for(follow(), 10)
    assert reasons == ["ErrImagePull", "ImagePullBackOff"]
    assert "not-imported" in messages[0]
    assert phase_of(later) == "Scheduled"
    assert await hypervisor.list_domains() == []


async def _sync_reason(store, reason):
    vmi = await get_vmi(store, "vm1")
    cond = conditions_of(vmi).get("Synchronized")
    return vmi if cond and cond.get("reason") == reason else None


async def test_a_restarted_agent_adopts_running_domains_without_restarting_them(
        object_store, hypervisor, agent_config):
    first = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await first.start()
    before = await running_vmi(object_store, "keep")
    await running_vmi(object_store, "gone")
    domain_before = await hypervisor.get_domain("default_keep")
    await first.stop()  # the handler dies; guests go on

    await object_store.delete(VMIS, "default", "gone")  # deleted while no handler watched
    started = []
    watcher = hypervisor.events()
    second = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await second.start()
    try:
        await wait_until(lambda: _domain_absent(hypervisor, "default_gone"))
        domain_after = await hypervisor.get_domain("default_keep")
        assert (domain_after.state, domain_after.domain_id) == ("Running", domain_before.domain_id)
        after = await get_vmi(object_store, "keep")
        assert after["status"] == before["status"]  # nothing to correct: no write at all
        while True:
            try:
                event = await asyncio.wait_for(watcher.__anext__(), 0.2)
            except TimeoutError:
                break
            started.append((event.name, event.event))
        assert ("default_keep", "Started") not in started
    finally:
        await watcher.aclose()
        await second.stop()


async def test_a_running_vmi_whose_domain_vanished_fails(object_store, hypervisor, agent_config):
    first = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await first.start()
    await running_vmi(object_store)
    await first.stop()
    await hypervisor.destroy("default_vm1")
    await hypervisor.undefine("default_vm1")  # e.g. libvirt state lost with the host
    second = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await second.start()
    try:
        await wait_until(lambda: _in_phase(object_store, "vm1", "Failed"))
    finally:
        await second.stop()


async def test_domain_changes_are_announced_on_versioned_subjects(object_store, hypervisor, agent):
    received = []
    async def collect(msg):
        received.append((msg.subject, events.decode_domain_event(msg.data)))

    subscription = await object_store.bus.subscribe(events.domain_event_wildcard("node1"), cb=collect)
    try:
        vmi = await running_vmi(object_store)
        await wait_until(lambda: any(e.event == "Started" for _, e in received))
    finally:
        await subscription.unsubscribe()
    subject, started = next((s, e) for s, e in received if e.event == "Started")
    assert subject == "kubevirt.v1.domain.node1.default.vm1"
    assert (started.node, started.namespace, started.name, started.uid) == \
        ("node1", "default", "vm1", vmi["metadata"]["uid"])



async def test_domains_of_another_handler_on_the_same_libvirt_are_never_touched(object_store, hypervisor, agent):
    from handler_helpers import new_uid

    other = f"""<domain type='test'><name>default_theirs</name>
      <metadata><kubevirt xmlns="http://kubevirt.io"><uid>{new_uid()}</uid></kubevirt></metadata>
      <memory unit='KiB'>65536</memory><os><type>hvm</type></os></domain>"""
    await hypervisor.define_and_start(other)
    await running_vmi(object_store)  # the agent is busy and resyncs meanwhile
    await asyncio.sleep(1.5)  # more than one resync interval
    theirs = await hypervisor.get_domain("default_theirs")
    assert theirs is not None and theirs.state == "Running"
