"""Run strategies decide create/delete/restart as KubeVirt's syncRunStrategy does."""
from datetime import datetime, timezone

import pytest

from controller_objects import as_dict, requests as typed_requests, vm as typed_vm, \
    vm_status, vmi as typed_vmi

from services.virt_controller.run_strategy import (
    RunStrategyAction,
    compute_run_strategy,
    compute_run_strategy_action,
    compute_trimmed_requests,
    is_set_to_start,
)
from shared.sync_error import SyncError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def make_vmi(phase="Running", uid="u1", deleting=False):
    meta = {"name": "vm", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:00Z"
    return typed_vmi({"metadata": meta, "status": {"phase": phase}})


def stop(uid="u1"):
    return {"action": "Stop", "uid": uid}


START = {"action": "Start"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"runStrategy": "Always"}, "Always", id="always"),
        pytest.param({"runStrategy": "Once"}, "Once", id="once"),
        pytest.param({"running": True}, "Always", id="running-true-is-always"),
        pytest.param({"running": False}, "Halted", id="running-false-is-halted"),
        pytest.param({}, "Halted", id="neither-is-halted"),
    ],
)
def test_effective_run_strategy(spec, expected):
    assert compute_run_strategy(typed_vm({"spec": spec})) == expected


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"running": True, "runStrategy": "Always"}, id="both-set"),
        pytest.param({"runStrategy": "Sometimes"}, id="unknown-value"),
    ],
)
def test_bad_run_strategy_is_a_permanent_sync_error(spec):
    with pytest.raises(SyncError) as err:
        compute_run_strategy(typed_vm({"spec": spec}))
    assert err.value.retryable is False
    assert err.value.reason == "UnknownRunStrategy"


CREATE = RunStrategyAction(create=True)
DELETE = RunStrategyAction(delete=True)
NOTHING = RunStrategyAction()


@pytest.mark.parametrize(
    ("strategy", "status", "vmi", "expected"),
    [
        # Always
        pytest.param("Always", {}, None, CREATE, id="always-no-vmi-creates"),
        pytest.param("Always", {}, make_vmi("Running"), NOTHING, id="always-running-left-alone"),
        pytest.param("Always", {}, make_vmi("Succeeded"), DELETE, id="always-clean-shutdown-deletes-to-restart"),
        pytest.param("Always", {}, make_vmi("Failed"), DELETE, id="always-failed-deletes-to-restart"),
        pytest.param("Always", {"stateChangeRequests": [stop(), START]}, make_vmi("Running"), DELETE,
                     id="always-restart-request-deletes"),
        pytest.param("Always", {"stateChangeRequests": [stop()]}, make_vmi("Running", deleting=True), NOTHING,
                     id="always-already-deleting"),
        pytest.param("Always", {"stateChangeRequests": [stop("other")]}, make_vmi("Running"), NOTHING,
                     id="always-stop-for-other-uid-ignored"),
        pytest.param("Always", {"startFailure": {"consecutiveFailCount": 1,
                                                 "retryAfterTimestamp": "2026-01-02T03:04:15Z"}}, None,
                     RunStrategyAction(requeue_after=10.0), id="always-in-backoff-waits"),
        pytest.param("Always", {"startFailure": {"consecutiveFailCount": 1,
                                                 "retryAfterTimestamp": "2026-01-02T03:04:05Z"}}, None,
                     CREATE, id="always-backoff-over-creates"),
        # RerunOnFailure
        pytest.param("RerunOnFailure", {}, None, CREATE, id="rerun-first-start"),
        pytest.param("RerunOnFailure", {"runStrategy": "RerunOnFailure"}, None, NOTHING,
                     id="rerun-stopped-stays-stopped"),
        pytest.param("RerunOnFailure", {"runStrategy": "Halted"}, None, CREATE, id="rerun-switched-from-halted"),
        pytest.param("RerunOnFailure", {"runStrategy": "RerunOnFailure", "stateChangeRequests": [START]}, None,
                     CREATE, id="rerun-start-request"),
        pytest.param("RerunOnFailure", {"runStrategy": "RerunOnFailure"}, make_vmi("Succeeded"), DELETE,
                     id="rerun-succeeded-deleted-not-restarted"),
        pytest.param("RerunOnFailure", {"runStrategy": "RerunOnFailure"}, make_vmi("Failed"),
                     RunStrategyAction(delete=True, add_start_request=True), id="rerun-failed-restarts"),
        pytest.param("RerunOnFailure", {"runStrategy": "RerunOnFailure", "stateChangeRequests": [START]},
                     make_vmi("Failed"), DELETE, id="rerun-failed-start-request-not-doubled"),
        pytest.param("RerunOnFailure", {}, make_vmi("Failed", deleting=True), NOTHING, id="rerun-failed-deleting"),
        pytest.param("RerunOnFailure", {"stateChangeRequests": [stop()]}, make_vmi("Running"), DELETE,
                     id="rerun-stop-request"),
        # Manual
        pytest.param("Manual", {}, None, NOTHING, id="manual-no-request-stays-stopped"),
        pytest.param("Manual", {"stateChangeRequests": [START]}, None, CREATE, id="manual-start-request"),
        pytest.param("Manual", {}, make_vmi("Succeeded"), NOTHING, id="manual-never-restarts"),
        pytest.param("Manual", {"stateChangeRequests": [stop()]}, make_vmi("Running"), DELETE,
                     id="manual-stop-request"),
        # Halted
        pytest.param("Halted", {}, None, NOTHING, id="halted-no-vmi"),
        pytest.param("Halted", {}, make_vmi("Running"), DELETE, id="halted-deletes-vmi"),
        pytest.param("Halted", {"stateChangeRequests": [{"action": "Start", "data": {"paused": "true"}}]}, None,
                     RunStrategyAction(switch_to_always=True), id="halted-start-paused-switches-to-always"),
        # Once
        pytest.param("Once", {}, None, CREATE, id="once-creates"),
        pytest.param("Once", {}, make_vmi("Succeeded"), NOTHING, id="once-final-left-alone"),
        pytest.param("Once", {}, make_vmi("Failed"), NOTHING, id="once-failed-left-alone"),
    ],
)
def test_run_strategy_table(strategy, status, vmi, expected):
    assert compute_run_strategy_action(strategy, vm_status(status), vmi, NOW) == expected


@pytest.mark.parametrize(
    ("requests", "vmi", "expected"),
    [
        pytest.param([stop(), START], None, [START], id="stop-done-when-vmi-gone"),
        pytest.param([stop(), START], make_vmi(uid="u2", phase="Pending"), [], id="both-done-with-new-vmi"),
        pytest.param([stop(), START], make_vmi(), [stop(), START], id="stop-pending-for-this-vmi"),
        pytest.param([START], make_vmi("Scheduling"), [], id="start-done-when-live-vmi"),
        pytest.param([START], make_vmi("Failed"), [START], id="start-pending-while-final"),
        pytest.param([START], make_vmi("Running", deleting=True), [START], id="start-pending-while-deleting"),
        pytest.param([{"action": "Stop"}], make_vmi(), [], id="stop-without-uid-dropped"),
        pytest.param([], None, [], id="empty"),
    ],
)
def test_carried_out_requests_are_trimmed(requests, vmi, expected):
    assert as_dict(compute_trimmed_requests(typed_requests(requests), vmi)) == expected


@pytest.mark.parametrize(
    ("strategy", "status", "vmi", "expected"),
    [
        pytest.param("Always", {}, None, True, id="always"),
        pytest.param("Halted", {}, make_vmi(), False, id="halted"),
        pytest.param("Manual", {"stateChangeRequests": [START]}, None, True, id="manual-start"),
        pytest.param("Manual", {"stateChangeRequests": [stop()]}, make_vmi(), False, id="manual-stop"),
        pytest.param("RerunOnFailure", {}, make_vmi("Succeeded"), False, id="rerun-succeeded"),
        pytest.param("Once", {}, make_vmi("Running"), False, id="once-with-vmi"),
    ],
)
def test_is_set_to_start(strategy, status, vmi, expected):
    assert is_set_to_start(strategy, vm_status(status), vmi) is expected
