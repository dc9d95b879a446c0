"""VM status computed from the VMI: created/ready, conditions, requests, stable when unchanged."""
from controller_objects import as_dict, vm as typed_vm, vm_status, vmi as typed_vmi
from shared.sync_error import SyncError
from services.virt_controller.vm_status import compute_vm_status as compute_typed_vm_status

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:05Z"


def compute_vm_status(vm, vmi, strategy, base, error, now):
    """The typed decision, fed and read in JSON form."""
    return as_dict(compute_typed_vm_status(vm, vmi, strategy, vm_status(base), error, now))


def vm(generation=3):
    return typed_vm({"metadata": {"name": "vm", "namespace": "default", "generation": generation}, "spec": {}})


def vmi(phase="Running", conditions=()):
    return typed_vmi({"metadata": {"uid": "u1"}, "status": {"phase": phase, "conditions": list(conditions)}})


READY = {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-01-02T03:00:00Z"}
PAUSED = {"type": "Paused", "status": "True", "reason": "PausedByUser", "lastTransitionTime": NOW}


def test_running_vmi_gives_created_ready_running_and_mirrored_conditions():
    status = compute_vm_status(vm(), vmi(conditions=[READY, PAUSED]), "Always", {}, None, NOW)
    assert status["created"] is True and status["ready"] is True
    assert status["printableStatus"] == "Paused"
    assert status["runStrategy"] == "Always"
    assert status["observedGeneration"] == 3
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Paused"]
    assert status["conditions"][0] == {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:00:00Z"}


def test_no_vmi_gives_stopped_and_vmi_not_exists_and_keeps_no_false_flags():
    status = compute_vm_status(vm(), None, "Halted", {"created": True, "ready": True}, None, NOW)
    assert "created" not in status and "ready" not in status
    assert status["printableStatus"] == "Stopped"
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "VMINotExists", "VMI does not exist")


def test_recomputing_the_same_state_later_is_equal_so_nothing_is_written():
    first = compute_vm_status(vm(), vmi(conditions=[READY]), "Always", {}, None, NOW)
    again = compute_vm_status(vm(), vmi(conditions=[READY]), "Always", first, None, LATER)
    assert again == first


def test_sync_error_sets_failure_and_success_removes_it():
    err = SyncError("failed to create virtual machine instance: bad", reason="FailedCreate")
    failing = compute_vm_status(vm(), None, "Always", {}, err, NOW)
    failure = [c for c in failing["conditions"] if c["type"] == "Failure"][0]
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreate")
    healed = compute_vm_status(vm(), vmi("Scheduling"), "Always", failing, None, LATER)
    assert [c["type"] for c in healed["conditions"]] == ["Ready"]
    assert healed["printableStatus"] == "Starting"


def test_vmi_conditions_gone_from_the_vmi_are_removed_from_the_vm():
    paused = compute_vm_status(vm(), vmi(conditions=[READY, PAUSED]), "Always", {}, None, NOW)
    resumed = compute_vm_status(vm(), vmi(conditions=[READY]), "Always", paused, None, LATER)
    assert [c["type"] for c in resumed["conditions"]] == ["Ready"]
    assert resumed["printableStatus"] == "Running"


def test_carried_out_requests_are_dropped_from_status():
    base = {"stateChangeRequests": [{"action": "Stop", "uid": "old"}, {"action": "Start"}]}
    status = compute_vm_status(vm(), vmi("Scheduling"), "Manual", base, None, NOW)
    assert "stateChangeRequests" not in status
