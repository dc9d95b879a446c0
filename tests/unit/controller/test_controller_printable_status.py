"""printableStatus follows KubeVirt's precedence list."""
import pytest

from controller_objects import vm as typed_vm, vmi as typed_vmi

from services.virt_controller.printable_status import compute_printable_status


def make_vm(deleting=False, fail_count=0):
    meta = {"name": "vm", "namespace": "default"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    status = {}
    if fail_count:
        status["startFailure"] = {"consecutiveFailCount": fail_count}
    return typed_vm({"metadata": meta, "spec": {}, "status": status})


def make_vmi(phase="", deleting=False, conditions=(), migrating=False):
    meta = {"name": "vm", "namespace": "default", "uid": "u"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    status = {"phase": phase, "conditions": list(conditions)}
    if migrating:
        status["migrationState"] = {"startTimestamp": "2026-01-02T03:04:05Z"}
    return typed_vmi({"metadata": meta, "status": status})


def cond(ctype, status, reason=""):
    return {"type": ctype, "status": status, "reason": reason}


UNSCHEDULABLE = cond("PodScheduled", "False", "Unschedulable")


@pytest.mark.parametrize(
    ("vm", "vmi", "strategy", "kwargs", "expected"),
    [
        pytest.param(make_vm(deleting=True), make_vmi("Running"), "Always", {}, "Terminating",
                     id="vm-deleting-beats-all"),
        pytest.param(make_vm(), make_vmi("Running", deleting=True), "Always", {}, "Stopping",
                     id="vmi-deleting-is-stopping"),
        pytest.param(make_vm(), make_vmi("Running"), "Halted", {"stop_expected": True}, "Stopping",
                     id="expected-delete-is-stopping"),
        pytest.param(make_vm(), make_vmi("Succeeded", deleting=True), "Halted", {}, "Stopped",
                     id="final-and-deleting-is-stopped"),
        pytest.param(make_vm(), make_vmi("Running", migrating=True), "Always", {}, "Migrating", id="migrating"),
        pytest.param(make_vm(), make_vmi("Running", conditions=[cond("Paused", "True", "PausedByUser")]),
                     "Always", {}, "Paused", id="paused"),
        pytest.param(make_vm(), make_vmi("Running"), "Always", {}, "Running", id="running"),
        pytest.param(make_vm(), make_vmi("Scheduling", conditions=[UNSCHEDULABLE]), "Always", {},
                     "ErrorUnschedulable", id="unschedulable-beats-starting"),
        pytest.param(make_vm(), make_vmi("Scheduling", conditions=[cond("Synchronized", "False", "ErrImagePull")]),
                     "Always", {}, "ErrImagePull", id="image-pull"),
        pytest.param(make_vm(), make_vmi("Scheduling", conditions=[cond("Synchronized", "False",
                                                                        "ImagePullBackOff")]),
                     "Always", {}, "ImagePullBackOff", id="image-pull-backoff"),
        pytest.param(make_vm(), make_vmi("Scheduled", conditions=[cond("Synchronized", "False",
                                                                       "FailedPvcNotFound")]),
                     "Always", {}, "ErrorPvcNotFound", id="pvc-not-found"),
        pytest.param(make_vm(), make_vmi(""), "Always", {}, "Starting", id="unset-phase-starting"),
        pytest.param(make_vm(), make_vmi("Pending"), "Always", {}, "Starting", id="pending-starting"),
        pytest.param(make_vm(), make_vmi("Scheduling"), "Always", {}, "Starting", id="scheduling-starting"),
        pytest.param(make_vm(), make_vmi("Scheduled"), "Always", {}, "Starting", id="scheduled-starting"),
        pytest.param(make_vm(), None, "Always", {"start_expected": True}, "Starting", id="expected-create"),
        pytest.param(make_vm(fail_count=2), None, "Always", {}, "CrashLoopBackOff", id="crash-loop-no-vmi"),
        pytest.param(make_vm(fail_count=2), make_vmi("Failed"), "RerunOnFailure", {}, "CrashLoopBackOff",
                     id="crash-loop-final-vmi"),
        pytest.param(make_vm(fail_count=2), None, "Manual", {}, "Stopped", id="manual-no-crash-loop"),
        pytest.param(make_vm(fail_count=2), None, "Always", {"start_expected": True}, "Starting",
                     id="expected-create-beats-crash-loop"),
        pytest.param(make_vm(), None, "Halted", {}, "Stopped", id="no-vmi-stopped"),
        pytest.param(make_vm(), make_vmi("Succeeded"), "Manual", {}, "Stopped", id="final-vmi-stopped"),
        pytest.param(make_vm(), make_vmi("Unknown"), "Always", {}, "Unknown", id="vmi-unknown"),
    ],
)
def test_printable_status_precedence(vm, vmi, strategy, kwargs, expected):
    assert compute_printable_status(vm, vmi, strategy, **kwargs) == expected
