"""Table tests of the VMIM phase machine (services.virt_migration.phase_decision): every
transition of migration-design.md's phase machine, cancel, final clean-up."""
from __future__ import annotations

from datetime import timedelta

import pytest

from migration_objects import NOW, ago, as_dict, make_vmi, make_vmim
from services.virt_migration import phase_decision as pd
from services.virt_migration.limits import MigrationCounts, MigrationLimits
from services.virt_migration.phase_decision import MigrationInputs, VmiChange, compute_migration_action

FIN = ["kubevirt.io/migrationJobFinalize"]
HANDED = {"migrationUid": "uid-mig", "sourceNode": "node-a", "targetNode": "node-b"}


def decide(vmim, vmi, **inputs):
    return compute_migration_action(vmim, vmi, MigrationInputs(**inputs), NOW)


def phases(action):
    return [s["phase"] for s in as_dict(action.status)["phaseTransitionTimestamps"]]


# -- "" --------------------------------------------------------------------------------------------------
def test_unset_becomes_pending_with_its_timestamp():
    action = decide(make_vmim(), make_vmi())
    assert action.phase == "Pending"
    assert as_dict(action.status)["phaseTransitionTimestamps"] == [
        {"phase": "Pending", "phaseTransitionTimestamp": "2026-03-01T12:00:00.000000Z"}]
    assert action.vmi_change is None and not action.remove_finalizer


@pytest.mark.parametrize("vmi, message", [
    (None, pd.VMI_MISSING),
    (make_vmi(phase="Succeeded"), pd.VMI_SHUTDOWN),
    (make_vmi(phase="Failed"), pd.VMI_SHUTDOWN),
    (make_vmi(deleting=True), pd.VMI_SHUTDOWN),
    (make_vmi(phase="Scheduled"), pd.VMI_NOT_RUNNING),
])
def test_unset_fails_for_a_vmi_that_cannot_migrate(vmi, message):
    action = decide(make_vmim(), vmi)
    assert action.phase == "Failed"
    assert [(e.type, e.reason, e.message) for e in action.events] == [("Warning", "FailedMigration", message)]


def test_unset_fails_when_an_earlier_vmim_of_the_vmi_is_active():
    action = decide(make_vmim(), make_vmi(), earlier_active=True)
    assert action.phase == "Failed"
    assert action.events[0].message == pd.ANOTHER_IN_PROGRESS


# -- Pending ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cluster, node, limits, moves", [
    (0, 0, MigrationLimits(5, 2), True),
    (4, 1, MigrationLimits(5, 2), True),
    (5, 0, MigrationLimits(5, 2), False),   # cluster full
    (3, 2, MigrationLimits(5, 2), False),   # source node full
    (9, 0, MigrationLimits(10, 1), True),
    (0, 0, MigrationLimits(0, 2), False),   # limit 0 stops every migration
])
def test_pending_starts_scheduling_only_within_both_limits(cluster, node, limits, moves):
    vmim = make_vmim(phase="Pending", stamps=[("Pending", ago(10))])
    action = decide(vmim, make_vmi(), counts=MigrationCounts(cluster, node), limits=limits, scheduling_timeout=300)
    if moves:
        assert action.phase == "Scheduling"
        assert phases(action) == ["Pending", "Scheduling"]
        assert action.events[0].reason == "SuccessfulCreate"
        assert action.requeue_after == 300  # the scheduling timeout is checked again then
    else:
        assert action == pd.NOTHING


def test_pending_waits_out_an_evacuation_backoff_then_starts():
    vmim = make_vmim(phase="Pending")
    waiting = decide(vmim, make_vmi(), backoff_until=NOW + timedelta(seconds=15))
    assert waiting.status is None and waiting.requeue_after == 15
    assert [(e.reason, e.on_vmi) for e in waiting.events] == [("MigrationBackoff", True)]
    assert decide(vmim, make_vmi(), backoff_until=NOW - timedelta(seconds=1)).phase == "Scheduling"


@pytest.mark.parametrize("phase", ["", "Pending", "Scheduling"])
def test_cancel_before_the_hand_off_fails_at_once_with_abort_succeeded(phase):
    vmim = make_vmim(phase=phase or None, deleting=True, finalizers=FIN,
                     state={"targetNode": "node-b", "sourceNode": "node-a"} if phase == "Scheduling" else None)
    action = decide(vmim, make_vmi())
    status = as_dict(action.status)
    assert status["phase"] == "Failed"
    assert [c["type"] for c in status["conditions"]] == ["migrationAbortRequested"]
    assert status["conditions"][0]["status"] == "True"
    assert status["migrationState"]["abortStatus"] == "Succeeded"
    assert status["migrationState"]["abortRequested"] is True
    assert action.events[0].message == pd.CANCELED
    assert action.vmi_change is None


# -- Scheduling ------------------------------------------------------------------------------------------
def test_scheduling_becomes_scheduled_once_the_bridge_chose_a_target():
    vmim = make_vmim(phase="Scheduling", state={"targetNode": "node-b", "sourceNode": "node-a"},
                     stamps=[("Pending", ago(3)), ("Scheduling", ago(2))])
    action = decide(vmim, make_vmi())
    assert action.phase == "Scheduled"
    assert phases(action) == ["Pending", "Scheduling", "Scheduled"]
    assert as_dict(action.status)["migrationState"] == {"targetNode": "node-b", "sourceNode": "node-a"}


def test_a_target_equal_to_the_source_fails():
    vmim = make_vmim(phase="Scheduling", state={"targetNode": "node-a"}, stamps=[("Scheduling", ago(2))])
    assert decide(vmim, make_vmi(node="node-a")).phase == "Failed"


def test_scheduling_times_out_after_the_setting():
    vmim = make_vmim(phase="Scheduling", stamps=[("Scheduling", ago(100))])
    waiting = decide(vmim, make_vmi(), scheduling_timeout=300)
    assert waiting.status is None and waiting.requeue_after == pytest.approx(200)
    failed = decide(vmim, make_vmi(), scheduling_timeout=100)
    assert failed.phase == "Failed"
    assert "could not be scheduled within 100 seconds" in failed.events[0].message


# -- Scheduled: the hand-off ---------------------------------------------------------------------------
def test_scheduled_hands_the_migration_to_the_handlers():
    vmim = make_vmim(phase="Scheduled", state={"targetNode": "node-b", "sourceNode": "node-a"})
    action = decide(vmim, make_vmi())
    assert action.vmi_change == VmiChange.HANDOFF and action.status is None
    assert [(e.reason, e.on_vmi) for e in action.events] == [("SuccessfulHandOver", False)]


def test_a_previous_finished_migration_state_is_replaced_by_the_hand_off():
    old = {"migrationUid": "uid-old", "completed": True, "targetNode": "node-a"}
    vmim = make_vmim(phase="Scheduled", state={"targetNode": "node-b"})
    assert decide(vmim, make_vmi(state=old)).vmi_change == VmiChange.HANDOFF


def test_scheduled_fails_when_another_migration_holds_the_vmi():
    other = {"migrationUid": "uid-other", "targetNode": "node-c"}
    vmim = make_vmim(phase="Scheduled", state={"targetNode": "node-b"})
    action = decide(vmim, make_vmi(state=other))
    assert action.phase == "Failed" and action.events[0].message == pd.ANOTHER_IN_PROGRESS


def test_scheduled_becomes_preparing_target_once_the_vmi_carries_the_hand_off():
    vmim = make_vmim(phase="Scheduled", state={"targetNode": "node-b", "sourceNode": "node-a"})
    action = decide(vmim, make_vmi(state=HANDED))
    assert action.phase == "PreparingTarget"
    assert as_dict(action.status)["migrationState"] == HANDED


# -- after the hand-off --------------------------------------------------------------------------------
@pytest.mark.parametrize("phase, vmi_state, expected", [
    ("PreparingTarget", {**HANDED}, None),
    ("PreparingTarget", {**HANDED, "targetNodeAddress": "127.0.0.1"}, "TargetReady"),
    ("TargetReady", {**HANDED, "targetNodeAddress": "127.0.0.1"}, None),
    ("TargetReady", {**HANDED, "targetNodeAddress": "127.0.0.1", "startTimestamp": "2026-03-01T11:59:59Z"}, "Running"),
    ("Running", {**HANDED, "startTimestamp": "2026-03-01T11:59:59Z", "completed": True}, None),  # ownership CAS pending
    ("Running", {**HANDED, "completed": True, "failed": True, "failureReason": "x"}, "Failed"),
    ("PreparingTarget", {**HANDED, "completed": True, "failed": True}, "Failed"),
])
def test_the_phase_follows_the_vmi_migration_state(phase, vmi_state, expected):
    vmim = make_vmim(phase=phase, state=vmi_state)  # copy already current
    action = decide(vmim, make_vmi(state=vmi_state))
    assert action.phase == expected
    if expected is None:
        assert action == pd.NOTHING
    if expected == "Failed":
        assert action.events[0].message == pd.SOURCE_FAILED


def test_success_needs_the_ownership_cas_on_the_target():
    state = {**HANDED, "startTimestamp": "2026-03-01T11:59:59Z", "completed": True, "endTimestamp": "t"}
    action = decide(make_vmim(phase="Running", state=HANDED), make_vmi(node="node-b", state=state))
    assert action.phase == "Succeeded"
    assert as_dict(action.status)["migrationState"] == state
    assert [(e.type, e.reason) for e in action.events] == [("Normal", "SuccessfulMigration")]


def test_progress_is_copied_into_the_vmim_without_a_phase_change():
    state = {**HANDED, "startTimestamp": "s", "progress": {"dataRemainingBytes": 1000, "memoryIteration": 2}}
    action = decide(make_vmim(phase="Running", state={**HANDED, "startTimestamp": "s"}), make_vmi(state=state))
    assert action.phase == "Running"
    assert action.status.phase_transition_timestamps is None  # no transition recorded
    assert as_dict(action.status)["migrationState"]["progress"] == {"dataRemainingBytes": 1000, "memoryIteration": 2}


@pytest.mark.parametrize("vmi_state, message", [
    (None, pd.STATE_CLEARED),
    ({"migrationUid": "uid-other", "targetNode": "node-c"}, pd.TAKEN_OVER),
])
def test_a_lost_migration_state_fails_the_vmim(vmi_state, message):
    action = decide(make_vmim(phase="TargetReady", state=HANDED), make_vmi(state=vmi_state))
    assert action.phase == "Failed" and action.events[0].message == message


@pytest.mark.parametrize("phase, vmi", [("Running", None), ("TargetReady", make_vmi(phase="Failed"))])
def test_a_vanished_or_final_vmi_fails_a_migration_in_flight(phase, vmi):
    assert decide(make_vmim(phase=phase, state=HANDED), vmi).phase == "Failed"


# -- cancel after the hand-off --------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["PreparingTarget", "TargetReady", "Running"])
def test_cancel_after_the_hand_off_asks_the_handlers_to_abort(phase):
    state = {**HANDED, "startTimestamp": "s"} if phase == "Running" else HANDED
    action = decide(make_vmim(phase=phase, deleting=True, state=state), make_vmi(state=state))
    assert action.vmi_change == VmiChange.ABORT
    assert action.phase == phase  # the phase follows the VMI afterwards
    assert [c["type"] for c in as_dict(action.status)["conditions"]] == ["migrationAbortRequested"]
    assert action.events[0].reason == "SuccessfulAbortMigration"


def test_a_requested_abort_waits_for_the_source_then_fails_as_canceled():
    asked = {**HANDED, "startTimestamp": "s", "abortRequested": True, "abortStatus": "Aborting"}
    cond = [{"type": "migrationAbortRequested", "status": "True"}]
    vmim = make_vmim(phase="Running", deleting=True, state=asked, conditions=cond)
    assert decide(vmim, make_vmi(state=asked)) == pd.NOTHING
    done = {**asked, "abortStatus": "Succeeded", "completed": True, "failed": True}
    action = decide(vmim, make_vmi(state=done))
    assert action.phase == "Failed" and action.events[0].message == pd.CANCELED
    assert as_dict(action.status)["migrationState"]["abortStatus"] == "Succeeded"


def test_an_abort_that_failed_ends_succeeded():
    state = {**HANDED, "startTimestamp": "s", "abortRequested": True, "abortStatus": "Failed", "completed": True}
    vmim = make_vmim(phase="Running", deleting=True, state=state,
                     conditions=[{"type": "migrationAbortRequested", "status": "True"}])
    assert decide(vmim, make_vmi(node="node-b", state=state)).phase == "Succeeded"


# -- final ------------------------------------------------------------------------------------------
def test_a_final_vmim_cleans_the_vmi_then_drops_its_finalizer():
    state = {**HANDED, "completed": True}
    vmim = make_vmim(phase="Succeeded", finalizers=FIN, state=state)
    labelled = make_vmi(node="node-b", state=state, labels={"kubevirt.io/migrationTargetNodeName": "node-b"})
    first = decide(vmim, labelled)
    assert first.vmi_change == VmiChange.FINISH and not first.remove_finalizer and first.status is None
    second = decide(vmim, make_vmi(node="node-b", state=state))
    assert second.vmi_change is None and second.remove_finalizer
    assert decide(make_vmim(phase="Succeeded", state=state), make_vmi(node="node-b", state=state)) == pd.NOTHING


def test_a_successful_evacuation_clears_evacuation_node_name():
    state = {**HANDED, "completed": True}
    vmi = make_vmi(node="node-b", state=state, evacuation="node-a")
    assert decide(make_vmim(phase="Succeeded", state=state), vmi).vmi_change == VmiChange.FINISH
    failed = make_vmim(phase="Failed", state={**state, "failed": True})
    assert decide(failed, make_vmi(state={**state, "failed": True}, evacuation="node-a")).vmi_change is None


def test_a_final_vmim_leaves_another_migrations_vmi_alone():
    vmi = make_vmi(state={"migrationUid": "uid-next", "targetNode": "node-c"},
                   labels={"kubevirt.io/migrationTargetNodeName": "node-c"})
    action = decide(make_vmim(phase="Failed", finalizers=FIN), vmi)
    assert action.vmi_change is None and action.remove_finalizer


def test_a_final_vmim_of_a_vanished_vmi_drops_its_finalizer():
    action = decide(make_vmim(phase="Failed", finalizers=FIN, deleting=True), None)
    assert action.remove_finalizer and action.status is None
