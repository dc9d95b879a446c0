"""virt-migration on a real store: the full phase timeline, cancel before and while Running,
a VMIM deleted without its finalizer, and garbage collection. The test plays scheduler-bridge and
the two handlers by writing the fields they would write."""
from __future__ import annotations

from migration_controller_helpers import (
    NS,
    VMIMS,
    VMIS,
    ConcurrencyWatch,
    StandInAgents,
    bridge_places,
    create_vmi,
    create_vmim,
    handler_writes,
    now_text,
    state_of,
    target_takes_ownership,
    vmim_phase,
    wait_for,
)
from shared.errors import NotFound

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def phase_is(store, name, phase):
    return await vmim_phase(store, name) == phase


async def events_of(store, name):
    events, _ = await store.list("events", NS)
    return [(e["type"], e["reason"]) for e in events if e["involvedObject"]["name"] == name]


async def gone(store, name):
    try:
        await store.get(VMIMS, NS, name)
    except NotFound:
        return True
    return False


async def test_full_phase_timeline_and_hand_off(object_store, migration):
    store = object_store
    await create_vmi(store, "vm1", "node-a")
    vmim = await create_vmim(store, "mig1", "vm1", annotations={"kubevirt-py.io/traceparent": TRACEPARENT})
    uid = vmim["metadata"]["uid"]
    await wait_for(lambda: phase_is(store, "mig1", "Scheduling"), what="Scheduling")
    await bridge_places(store, "mig1", "node-b", "node-a")
    await wait_for(lambda: phase_is(store, "mig1", "PreparingTarget"), what="PreparingTarget")
    vmi = await store.get(VMIS, NS, "vm1")
    assert state_of(vmi) == {
        "migrationUid": uid, "sourceNode": "node-a", "targetNode": "node-b",
        "migrationConfiguration": {"bandwidthPerMigration": "0Mi", "completionTimeoutPerGiB": 150,
                                   "progressTimeout": 150, "maxDowntimeMs": 900, "allowAutoConverge": False,
                                   "allowPostCopy": False, "allowWorkloadDisruption": False}}
    assert vmi["metadata"]["labels"]["kubevirt.io/migrationTargetNodeName"] == "node-b"
    assert vmi["metadata"]["annotations"]["kubevirt-py.io/migration-traceparent"] == TRACEPARENT
    await handler_writes(store, "vm1", uid, targetNodeAddress="127.0.0.1")
    await wait_for(lambda: phase_is(store, "mig1", "TargetReady"), what="TargetReady")
    await handler_writes(store, "vm1", uid, startTimestamp=now_text(), mode="PreCopy")
    await wait_for(lambda: phase_is(store, "mig1", "Running"), what="Running")
    await handler_writes(store, "vm1", uid, progress={"dataRemainingBytes": 4096, "memoryIteration": 3})

    async def progress_copied():
        vmim = await store.get(VMIMS, NS, "mig1")
        return (vmim["status"].get("migrationState") or {}).get("progress") == {
            "dataRemainingBytes": 4096, "memoryIteration": 3}
    await wait_for(progress_copied, what="progress copy")
    await handler_writes(store, "vm1", uid, completed=True, endTimestamp=now_text())
    assert await vmim_phase(store, "mig1") == "Running"  # not before the ownership CAS
    await target_takes_ownership(store, "vm1", uid)
    await wait_for(lambda: phase_is(store, "mig1", "Succeeded"), what="Succeeded")

    async def finished():
        vmim = await store.get(VMIMS, NS, "mig1")
        vmi = await store.get(VMIS, NS, "vm1")
        return not vmim["metadata"].get("finalizers") and \
            "kubevirt.io/migrationTargetNodeName" not in vmi["metadata"]["labels"]
    await wait_for(finished, what="finalizer and label removed")
    vmim = await store.get(VMIMS, NS, "mig1")
    vmi = await store.get(VMIS, NS, "vm1")
    stamps = vmim["status"]["phaseTransitionTimestamps"]
    assert [s["phase"] for s in stamps] == ["Pending", "Scheduling", "Scheduled", "PreparingTarget",
                                            "TargetReady", "Running", "Succeeded"]
    assert [s["phaseTransitionTimestamp"] for s in stamps] == sorted(s["phaseTransitionTimestamp"] for s in stamps)
    assert vmim["status"]["migrationState"] == state_of(vmi)
    assert state_of(vmi)["completed"] is True and vmi["status"]["nodeName"] == "node-b"
    assert await events_of(store, "mig1") == [("Normal", "SuccessfulCreate"), ("Normal", "SuccessfulHandOver"),
                                              ("Normal", "SuccessfulMigration")]
    samples = migration.migration_samples()
    assert samples.succeeded == [("vm1", "mig1", NS)] and samples.phases["running"] == 0


async def test_cancel_before_the_hand_off_and_before_the_source_started(object_store, migration):
    store = object_store
    await create_vmi(store, "vm1", "node-a")
    await create_vmi(store, "vm2", "node-a")
    await create_vmim(store, "early", "vm1")
    await wait_for(lambda: phase_is(store, "early", "Scheduling"), what="Scheduling")
    await store.delete(VMIMS, NS, "early")
    await wait_for(lambda: gone(store, "early"), what="cancelled VMIM removed")
    vmi1 = await store.get(VMIS, NS, "vm1")
    assert state_of(vmi1) == {} and vmi1["status"]["nodeName"] == "node-a"
    assert ("Warning", "FailedMigration") in await events_of(store, "early")

    watch = ConcurrencyWatch(store, lambda vmi: "node-a").start()
    vmim = await create_vmim(store, "ready", "vm2")
    uid = vmim["metadata"]["uid"]
    await wait_for(lambda: phase_is(store, "ready", "Scheduling"), what="Scheduling")
    await bridge_places(store, "ready", "node-b", "node-a")
    await wait_for(lambda: phase_is(store, "ready", "PreparingTarget"), what="PreparingTarget")
    await handler_writes(store, "vm2", uid, targetNodeAddress="127.0.0.1")
    await wait_for(lambda: phase_is(store, "ready", "TargetReady"), what="TargetReady")
    await store.delete(VMIMS, NS, "ready")

    await wait_for(lambda: gone(store, "ready"), what="VMIM Failed and removed")
    await watch.stop()
    vmim = watch.last["ready"]
    assert [s["phase"] for s in vmim["status"]["phaseTransitionTimestamps"]] == [
        "Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Failed"]
    assert [c["type"] for c in vmim["status"]["conditions"]] == ["migrationAbortRequested"]
    assert vmim["status"]["migrationState"]["abortStatus"] == "Succeeded"
    vmi2 = await store.get(VMIS, NS, "vm2")
    assert state_of(vmi2)["abortRequested"] is True and state_of(vmi2)["failed"] is True
    assert "startTimestamp" not in state_of(vmi2) and vmi2["status"]["nodeName"] == "node-a"
    assert "kubevirt.io/migrationTargetNodeName" not in vmi2["metadata"]["labels"]


async def test_cancel_while_running_waits_for_the_source(object_store, migration):
    store = object_store
    await create_vmi(store, "vm1", "node-a")
    vmim = await create_vmim(store, "mig1", "vm1")
    uid = vmim["metadata"]["uid"]
    await wait_for(lambda: phase_is(store, "mig1", "Scheduling"), what="Scheduling")
    await bridge_places(store, "mig1", "node-b", "node-a")
    await wait_for(lambda: phase_is(store, "mig1", "PreparingTarget"), what="PreparingTarget")
    await handler_writes(store, "vm1", uid, targetNodeAddress="127.0.0.1")
    await handler_writes(store, "vm1", uid, startTimestamp=now_text(), mode="PreCopy")
    await wait_for(lambda: phase_is(store, "mig1", "Running"), what="Running")
    await store.delete(VMIMS, NS, "mig1")

    async def abort_requested():
        return state_of(await store.get(VMIS, NS, "vm1")).get("abortRequested")
    await wait_for(abort_requested, what="abortRequested on the VMI")
    assert await vmim_phase(store, "mig1") == "Running"  # the source has not answered yet
    await handler_writes(store, "vm1", uid, abortStatus="Succeeded", completed=True, failed=True,
                         endTimestamp=now_text(), failureReason="aborted by user")
    await wait_for(lambda: gone(store, "mig1"), what="VMIM Failed and removed")
    vmi = await store.get(VMIS, NS, "vm1")
    assert vmi["status"]["nodeName"] == "node-a" and state_of(vmi)["abortStatus"] == "Succeeded"


async def test_a_vmim_deleted_without_finalizer_aborts_its_migration(object_store, migration):
    store = object_store
    await create_vmi(store, "vm1", "node-a")
    vmim = await create_vmim(store, "bare", "vm1", finalizer=False)
    uid = vmim["metadata"]["uid"]
    await wait_for(lambda: phase_is(store, "bare", "Scheduling"), what="Scheduling")
    await bridge_places(store, "bare", "node-b", "node-a")
    await wait_for(lambda: phase_is(store, "bare", "PreparingTarget"), what="PreparingTarget")
    await handler_writes(store, "vm1", uid, targetNodeAddress="127.0.0.1", startTimestamp=now_text())
    await store.delete(VMIMS, NS, "bare")  # no finalizer: gone at once

    async def abort_requested():
        state = state_of(await store.get(VMIS, NS, "vm1"))
        return state.get("abortRequested") and state
    state = await wait_for(abort_requested, what="abort of the orphaned migration")
    assert state["migrationUid"] == uid and not state.get("failed")  # started: the source decides


async def test_garbage_collection_keeps_five_final_vmims_per_vmi(object_store, migration):
    store = object_store
    await create_vmi(store, "vm1", "node-a")
    with StandInAgents(store, target=lambda source: "node-b" if source == "node-a" else "node-a", transfer=0.05):
        for i in range(7):
            await create_vmim(store, f"mig{i}", "vm1")
            await wait_for(lambda: phase_is(store, f"mig{i}", "Succeeded"), what=f"mig{i} Succeeded")

    async def collected():
        items, _ = await store.list(VMIMS, NS)
        names = sorted(m["metadata"]["name"] for m in items)
        return names == [f"mig{i}" for i in range(2, 7)] and names
    await wait_for(collected, what="two oldest VMIMs collected")
    vmi = await store.get(VMIS, NS, "vm1")
    assert vmi["status"]["nodeName"] == "node-b"  # seven moves from node-a


async def test_reconciles_are_spans_of_the_vmims_trace(object_store):
    from shared import tracing
    from migration_controller_helpers import start_manager, stop_manager

    memory = tracing.use_in_memory_exporter()
    try:
        manager, task = await start_manager(object_store, "mig-traced")
        try:
            await create_vmi(object_store, "vm1", "node-a")
            await create_vmim(object_store, "mig1", "vm1", annotations={"kubevirt-py.io/traceparent": TRACEPARENT})
            await wait_for(lambda: phase_is(object_store, "mig1", "Scheduling"), what="Scheduling")
        finally:
            await stop_manager(task)
        spans = [s for s in memory.get_finished_spans() if s.name == "reconcile VirtualMachineInstanceMigration"]
        assert spans, "no reconcile span"
        assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACEPARENT[3:35]}
        assert {s.resource.attributes["service.name"] for s in spans} == {"virt-migration"}
        assert all(s.attributes["kubevirt.object"] == "default/mig1" for s in spans)
    finally:
        tracing.reset()
