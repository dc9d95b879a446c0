"""VMI phases that depend on nodes: unschedulable (scheduler's condition mirrored on the VM) and
Unknown when a node's heartbeat stops, Running again when its handler reports back."""
import asyncio

import pytest

from shared.api.vocabulary import parse_time
from controller_harness import (
    NS, VMIS, VMS, make_node, make_vm, now_text, running, running_manager, scheduled, update_vmi_status, wait_for,
)

pytestmark = pytest.mark.timeout(60)


async def printable(store, name):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus")


async def phase(store, name):
    return ((await store.get(VMIS, NS, name)).get("status") or {}).get("phase")


async def _is(coro, value):
    return (await coro) == value


def unschedulable(status):
    status = dict(status)
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient memory.", "lastTransitionTime": now_text()}]
    return status


async def test_unschedulable_vmi_shows_error_unschedulable_until_placed(object_store):
    store = object_store
    await store.create("nodes", make_node("small"), namespaced=False)
    async with running_manager(store):
        await store.create(VMS, make_vm("big"))
        await wait_for(lambda: _is(phase(store, "big"), "Scheduling"), what="Scheduling")
        await update_vmi_status(store, "big", unschedulable)  # what scheduler-bridge writes
        await wait_for(lambda: _is(printable(store, "big"), "ErrorUnschedulable"), what="ErrorUnschedulable")
        vm = await store.get(VMS, NS, "big")
        cond = [c for c in vm["status"]["conditions"] if c["type"] == "PodScheduled"][0]
        assert "Insufficient memory" in cond["message"]
        await update_vmi_status(store, "big", scheduled("small"))
        await update_vmi_status(store, "big", running)
        await wait_for(lambda: _is(printable(store, "big"), "Running"), what="Running")
        vm = await store.get(VMS, NS, "big")
        assert "PodScheduled" not in {c["type"] for c in vm["status"]["conditions"]}


async def test_vmi_becomes_unknown_when_its_node_stops_heartbeating_and_running_when_back(object_store):
    store = object_store
    await store.create("nodes", make_node("n1"), namespaced=False)
    # heartbeat stamps have whole seconds (as kubelet's): 3 s leaves 2 s at least after a beat
    async with running_manager(store, heartbeat_timeout=3.0):
        await store.create(VMS, make_vm("hb"))
        await wait_for(lambda: _is(phase(store, "hb"), "Scheduling"))
        await beat(store, "n1")  # the node is fresh while the VMI starts, however slow the machine
        await update_vmi_status(store, "hb", scheduled("n1"))
        await update_vmi_status(store, "hb", running)
        await wait_for(lambda: _is(printable(store, "hb"), "Running"))
        # no heartbeat from n1 any more
        await wait_for(lambda: _is(phase(store, "hb"), "Unknown"), timeout=10, what="Unknown")
        await wait_for(lambda: _is(printable(store, "hb"), "Unknown"), what="VM Unknown")
        vmi = await store.get(VMIS, NS, "hb")
        ready = [c for c in vmi["status"]["conditions"] if c["type"] == "Ready"][0]
        assert (ready["status"], ready["reason"]) == ("False", "NodeUnresponsive")
        # the handler comes back: heartbeat, and it reports the (still running) guest
        await beat(store, "n1")
        await update_vmi_status(store, "hb", running)
        await wait_for(lambda: _is(printable(store, "hb"), "Running"), what="Running again")
        assert await phase(store, "hb") == "Running"


async def beat(store, name):
    """One heartbeat of node ``name``, as its virt-handler writes it (Ready lastHeartbeatTime)."""
    node = await store.get("nodes", None, name)
    node["status"]["conditions"][0]["lastHeartbeatTime"] = now_text()
    await store.update("nodes", node, subresource="status")


async def test_vmi_of_a_fencing_node_is_unknown_then_failed_after_the_timeout_and_its_vm_restarts(object_store):
    """A node that fences itself after 1 s: its silent VMI reports Unknown once the fence is due,
    becomes Failed (NodeUnresponsive) only after --heartbeat-timeout, and only then does the VM
    (runStrategy Always) get a new VMI."""
    store = object_store
    node = make_node("n1")
    node["metadata"]["annotations"] = {"kubevirt-py.io/fence-after-seconds": "1"}
    await store.create("nodes", node, namespaced=False)
    seen: list[tuple[str, str, str | None, str | None]] = []  # uid, phase, reason, transition time

    async def record():
        async for event in store.watch(VMIS, NS):
            status = event.object.get("status") or {}
            stamps = {s["phase"]: s["phaseTransitionTimestamp"] for s in status.get("phaseTransitionTimestamps") or []}
            phase_now = status.get("phase") or ""
            seen.append((event.object["metadata"]["uid"], phase_now, status.get("reason"), stamps.get(phase_now)))

    recorder = asyncio.create_task(record())
    try:
        async with running_manager(store, heartbeat_timeout=4.0, fence_margin=2.0):
            await store.create(VMS, make_vm("lost"))
            await wait_for(lambda: _is(phase(store, "lost"), "Scheduling"))
            await beat(store, "n1")
            await update_vmi_status(store, "lost", scheduled("n1"))
            await update_vmi_status(store, "lost", running)
            first = (await store.get(VMIS, NS, "lost"))["metadata"]["uid"]
            silent_since = parse_time(
                (await store.get("nodes", None, "n1"))["status"]["conditions"][0]["lastHeartbeatTime"])
            await wait_for(lambda: _is(phase(store, "lost"), "Unknown"), timeout=10, what="Unknown")
            await wait_for(lambda: _uid_changed(store, "lost", first), timeout=15, what="a new VMI")
            events, _ = await store.list("events", NS)
    finally:
        recorder.cancel()
    old = [(p, r, t) for uid, p, r, t in seen if uid == first]
    phases = [p for p, _, _ in old]
    assert phases.index("Unknown") < phases.index("Failed"), phases
    _, reason, failed_at = next(entry for entry in old if entry[0] == "Failed")
    assert reason == "NodeUnresponsive"
    assert (parse_time(failed_at) - silent_since).total_seconds() > 4.0, "Failed only after the timeout"
    new_uids = {uid for uid, *_ in seen} - {first}
    assert len(new_uids) == 1
    first_new = min(i for i, entry in enumerate(seen) if entry[0] in new_uids)
    assert "Failed" in [p for uid, p, _, _ in seen[:first_new] if uid == first], "no replacement before Failed"
    lost = [e for e in events if e["reason"] == "NodeUnresponsive" and e["involvedObject"]["uid"] == first]
    assert [e["message"] for e in lost] == ["virt-handler on node n1 is not responsive, marking VMI as failed"]


async def _uid_changed(store, name, old_uid):
    return (await store.get(VMIS, NS, name))["metadata"]["uid"] != old_uid
