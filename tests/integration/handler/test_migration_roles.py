"""Two in-process virt-handlers on private test-driver hosts and a real nats-server: the target and
source roles of a STAND-IN live migration (the test driver cannot migrate), with the TEST playing
virt-migration (hand-off fields, abortRequested). Checks the ownership moves with one
compare-and-swap, abort keeps the guest on the source, and a handler restart in each step ends
with exactly one running domain and a status that tells the truth."""

from __future__ import annotations

import pytest
from handler_helpers import VMIS, get_vmi, make_vmi, phase_of
from migration_helpers import (
    MigrationNode,
    hand_off,
    state_of,
    update_migration_state,
    wait_migration_events,
    wait_state,
)
from polling import cancel_and_wait, wait_until

DOMAIN = "default_vm1"
PREPARED = ("node-b", "Normal", "PreparingTarget", "VirtualMachineInstance Migration Target Prepared.", 1)
MIGRATING = ("node-a", "Normal", "Migrating", "VirtualMachineInstance is migrating.", 1)
ABORTING = ("node-a", "Normal", "Migrating", "VirtualMachineInstance is aborting migration.", 1)
MIGRATED = ("node-b", "Normal", "Migrated", "The VirtualMachineInstance migrated to node node-b.", 1)


def failed_event(reason, migration_uid="mig-1"):
    return ("node-a", "Warning", "Migrated",
            f"VirtualMachineInstance migration uid {migration_uid} failed. reason:{reason}", 1)


@pytest.fixture
async def nodes(object_store, tmp_path):
    a = await MigrationNode(object_store, "node-a", tmp_path, stand_in_seconds=0.5).open()
    b = await MigrationNode(object_store, "node-b", tmp_path, stand_in_seconds=0.5).open()
    yield a, b
    await a.close()
    await b.close()


async def running_vmi(store, source):
    await store.create(VMIS, make_vmi(node=source.name))
    vmi = await wait_state(store, "vm1", lambda v: phase_of(v) == "Running")
    assert await source.running_domains() == [DOMAIN]
    return vmi


async def assert_one_running_domain(on, off):
    assert await on.running_domains() == [DOMAIN]
    assert [d.name for d in await off.domains()] == []


async def test_stand_in_migration_moves_domain_and_node_name_in_one_write(object_store, nodes):
    import asyncio

    a, b = nodes
    await a.start()
    await b.start()
    vmi = await running_vmi(object_store, a)
    uid = vmi["metadata"]["uid"]
    revisions = []

    async def follow():
        async for event in object_store.watch(VMIS, field_selector="metadata.name=vm1",
                                              resource_version=vmi["metadata"]["resourceVersion"]):
            revisions.append(event.object)

    watcher = asyncio.get_running_loop().create_task(follow())
    try:
        await hand_off(object_store, "vm1", "node-a", "node-b")
        done = await wait_state(object_store, "vm1", lambda v: v["status"].get("nodeName") == "node-b")
        await wait_until(lambda: len(revisions) and revisions[-1]["metadata"]["resourceVersion"]
                         == done["metadata"]["resourceVersion"])
    finally:
        await cancel_and_wait(watcher)
    ms = state_of(done)
    assert ms["completed"] is True and not ms.get("failed")
    assert ms["targetNodeAddress"] == "127.0.0.1" and ms["startTimestamp"] and ms["endTimestamp"]
    assert ms["mode"] == "PreCopy" and ms["targetNodeDomainDetected"] is True
    assert ms["targetNodeDomainReadyTimestamp"]
    assert ms["progress"]["dataRemainingBytes"] == 0 and ms["progress"]["dataProcessedBytes"] > 0
    assert done["metadata"]["labels"]["kubevirt.io/nodeName"] == "node-b"
    assert done["status"]["migrationMethod"] == "LiveMigration"
    # one write moved nodeName, and it also said completed + domain detected
    moves = [(before, after) for before, after in zip(revisions, revisions[1:])
             if before["status"].get("nodeName") != after["status"].get("nodeName")]
    assert len(moves) == 1
    moved = moves[0][1]
    assert state_of(moved)["targetNodeDomainDetected"] is True and state_of(moved)["completed"] is True
    assert all(r["status"].get("nodeName") == "node-a" for r in revisions[:revisions.index(moved)])
    # order of the hand-shake: target ready before the source started
    first_ready = next(i for i, r in enumerate(revisions) if state_of(r).get("targetNodeAddress"))
    first_start = next(i for i, r in enumerate(revisions) if state_of(r).get("startTimestamp"))
    assert first_ready < first_start
    await wait_until(lambda: not a.vmi_dir(uid).exists())  # the former source cleaned up
    await wait_until(lambda: "default/vm1" not in a.agent.vmis)
    await assert_one_running_domain(b, a)
    assert not (b.vmi_dir(uid) / "migration-incoming").exists()
    # the target is the owner now: the normal sync keeps the status (Ready, Running)
    vmi = await wait_state(object_store, "vm1", lambda v: any(
        c["type"] == "Ready" and c["status"] == "True" for c in v["status"].get("conditions") or []))
    assert phase_of(vmi) == "Running"
    # KubeVirt's migration Events on the VMI, each once, from the handler that made the step
    await wait_migration_events(object_store, [PREPARED, MIGRATING, MIGRATED])


async def test_abort_during_the_stand_in_delay_keeps_the_guest_on_the_source(object_store, nodes):
    a, b = nodes
    a.stand_in_seconds = 30.0
    await a.start()
    await b.start()
    vmi = await running_vmi(object_store, a)
    uid = vmi["metadata"]["uid"]
    await hand_off(object_store, "vm1", "node-a", "node-b")
    await wait_state(object_store, "vm1", lambda v: state_of(v).get("startTimestamp"))
    assert [d.state for d in await b.domains()] == ["Paused"]  # the stand-in's incoming domain
    await update_migration_state(object_store, "vm1", lambda ms: {**ms, "abortRequested": True})
    vmi = await wait_state(object_store, "vm1", lambda v: state_of(v).get("completed"))
    ms = state_of(vmi)
    assert (ms["failed"], ms["abortStatus"], ms["failureReason"]) == (True, "Succeeded", "Live migration aborted")
    assert vmi["status"]["nodeName"] == "node-a" and phase_of(vmi) == "Running"
    await wait_until(lambda: not b.vmi_dir(uid).exists())
    await wait_until(lambda: _no_domains(b))
    await assert_one_running_domain(a, b)
    await wait_migration_events(object_store, [PREPARED, MIGRATING, ABORTING,
                                               failed_event("Live migration aborted")])


async def _no_domains(node):
    return not await node.domains()


async def test_abort_before_start_fails_the_migration_without_moving(object_store, nodes):
    a, b = nodes
    await b.start()
    await a.start()
    await running_vmi(object_store, a)
    await a.stop()  # the source is away: the migration cannot start yet
    await hand_off(object_store, "vm1", "node-a", "node-b")
    await wait_state(object_store, "vm1", lambda v: state_of(v).get("targetNodeAddress"))
    await update_migration_state(object_store, "vm1", lambda ms: {**ms, "abortRequested": True})
    await a.start()
    vmi = await wait_state(object_store, "vm1", lambda v: state_of(v).get("completed"))
    ms = state_of(vmi)
    assert (ms["failed"], ms["abortStatus"], ms.get("startTimestamp")) == (True, "Succeeded", None)
    await wait_until(lambda: _no_domains(b))
    await assert_one_running_domain(a, b)
    # no transfer ran, so no abort was sent: only the failure
    await wait_migration_events(object_store, [PREPARED, failed_event("Migration aborted before it started")])


# -- a handler restart in each step ---------------------------------------------------------------------------
STEPS = ["target-after-ready", "target-during-transfer", "source-before-start", "source-during-transfer",
         "source-after-completed"]


@pytest.mark.parametrize("step", STEPS)
async def test_restart_of_either_handler_ends_with_one_running_domain(object_store, nodes, step):
    a, b = nodes
    a.stand_in_seconds = 2.0
    await a.start()
    await b.start()
    vmi = await running_vmi(object_store, a)
    uid = vmi["metadata"]["uid"]
    moved = True
    if step == "target-after-ready":
        await a.stop()
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("targetNodeAddress"))
        await b.stop()
        await b.start()
        await a.start()
    elif step == "target-during-transfer":
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("startTimestamp"))
        await b.stop()
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("completed"))
        assert await a.running_domains() == []  # the source let go; the target is not back yet
        assert (await get_vmi(object_store, "vm1"))["status"]["nodeName"] == "node-a"
        await b.start()
    elif step == "source-before-start":
        await a.stop()
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("targetNodeAddress"))
        await a.start()
    elif step == "source-during-transfer":
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("startTimestamp"))
        await a.stop()  # the stand-in transfer dies with it; the domain stays on the source
        await a.start()
        moved = False
    else:  # source-after-completed
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("startTimestamp"))
        await b.stop()
        await wait_state(object_store, "vm1", lambda v: state_of(v).get("completed"))
        await a.stop()
        await a.start()
        assert phase_of(await get_vmi(object_store, "vm1")) == "Running"  # never Failed for the vanished domain
        await b.start()
    if moved:
        vmi = await wait_state(object_store, "vm1", lambda v: v["status"].get("nodeName") == "node-b")
        assert state_of(vmi)["completed"] is True and not state_of(vmi).get("failed")
        await wait_until(lambda: not a.vmi_dir(uid).exists())
        await assert_one_running_domain(b, a)
        expected = [PREPARED, MIGRATING, MIGRATED]
    else:
        vmi = await wait_state(object_store, "vm1", lambda v: state_of(v).get("completed"))
        ms = state_of(vmi)
        assert ms["failed"] is True and "interrupted" in ms["failureReason"]
        assert vmi["status"]["nodeName"] == "node-a"
        await wait_until(lambda: not b.vmi_dir(uid).exists())
        await wait_until(lambda: _no_domains(b))
        await assert_one_running_domain(a, b)
        expected = [PREPARED, MIGRATING, failed_event(ms["failureReason"])]
    assert phase_of(await get_vmi(object_store, "vm1")) == "Running"
    # a restarted handler finds its steps written: no Event is recorded twice
    await wait_migration_events(object_store, expected)


async def test_spans_join_the_migration_trace_and_the_source_exports_metrics(object_store, nodes):
    from shared import tracing
    from shared.metrics import compute_metrics_text

    memory = tracing.use_in_memory_exporter()
    try:
        a, b = nodes
        await a.start()
        await b.start()
        trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        vmi = make_vmi(node="node-a")
        vmi["metadata"]["annotations"] = {"kubevirt-py.io/migration-traceparent": f"00-{trace_id}-{parent_id}-01"}
        await object_store.create(VMIS, vmi)
        await wait_state(object_store, "vm1", lambda v: phase_of(v) == "Running")
        await hand_off(object_store, "vm1", "node-a", "node-b")
        await wait_state(object_store, "vm1", lambda v: v["status"].get("nodeName") == "node-b")
        tracing.force_flush()
        spans = [s for s in memory.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
        names = {s.name: s for s in spans}
        source = names["migrate VirtualMachineInstance (stand-in source)"]
        assert source.parent.span_id == int(parent_id, 16)
        assert names["libvirt.destroy"].parent.span_id == source.context.span_id
        assert {"prepare migration target", "start migration on the source",
                "take over VirtualMachineInstance"} <= set(names)
        # the source's series go once the VMI has left node-a (its files are removed)
        await wait_until(lambda: 'node="node-a"' not in _migration_series(compute_metrics_text().decode()))
    finally:
        tracing.reset()


def _migration_series(text):
    return "\n".join(line for line in text.splitlines()
                     if line.startswith("kubevirt_vmi_migration_") and 'name="vm1"' in line)
