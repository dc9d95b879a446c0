"""The VMI controller's transitions and the node heartbeat rule (pure, fake clock)."""
from datetime import datetime, timedelta, timezone

import pytest

from controller_objects import as_dict, vmi as typed_vmi
from services.virt_controller.node_loss import NodeHealth
from services.virt_controller.vmi_lifecycle import compute_vmi_update

UP, SILENT, LOST = NodeHealth.RESPONSIVE, NodeHealth.UNRESPONSIVE, NodeHealth.LOST

NOW = datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)
FINALIZER = "kubevirt.io/foregroundDeleteVirtualMachine"


def make_vmi(phase="", *, deleting=False, node=None, finalizers=None):
    meta = {"name": "v", "namespace": "default", "uid": "u", "resourceVersion": "7"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:00Z"
    if finalizers is not None:
        meta["finalizers"] = finalizers
    status = {"phase": phase} if phase else {}
    if node:
        status["nodeName"] = node
    return typed_vmi({"metadata": meta, "spec": {}, "status": status})


def test_pending_vmi_moves_to_scheduling_with_finalizer_and_a_microsecond_timestamp():
    new = as_dict(compute_vmi_update(make_vmi("Pending"), node_health=UP, now=NOW))
    assert new["metadata"]["finalizers"] == [FINALIZER]
    assert new["status"]["phase"] == "Scheduling"
    assert new["status"]["phaseTransitionTimestamps"] == [
        {"phase": "Scheduling", "phaseTransitionTimestamp": "2026-01-02T03:04:05.250000Z"}]
    assert "conditions" not in new["status"]


@pytest.mark.parametrize(
    ("vmi", "health", "phase", "reason", "finalizers"),
    [
        pytest.param(make_vmi("", deleting=True, finalizers=[FINALIZER]), UP, "Failed", "DeletedBeforeStart", None,
                     id="deleted-before-processing"),
        pytest.param(make_vmi("Scheduling", deleting=True, finalizers=[FINALIZER, "x"]), UP, "Failed",
                     "DeletedWhileScheduling", ["x"], id="deleted-while-scheduling-keeps-others"),
        pytest.param(make_vmi("Running", node="n1", deleting=True, finalizers=[FINALIZER]), SILENT, "Unknown",
                     None, [FINALIZER], id="deleted-on-silent-node-waits-for-the-fence"),
        pytest.param(make_vmi("Running", node="n1", deleting=True, finalizers=[FINALIZER]), LOST, "Failed",
                     "NodeUnresponsive", None, id="deleted-on-lost-node-fails"),
        pytest.param(make_vmi("Running", node="n1"), SILENT, "Unknown", None, None, id="silent-node-unknown"),
        pytest.param(make_vmi("Scheduled", node="n1"), SILENT, "Unknown", None, None, id="silent-node-scheduled"),
        pytest.param(make_vmi("Running", node="n1", finalizers=[FINALIZER]), LOST, "Failed", "NodeUnresponsive",
                     None, id="lost-node-running-fails"),
        pytest.param(make_vmi("Unknown", node="n1", finalizers=[FINALIZER, "x"]), LOST, "Failed",
                     "NodeUnresponsive", ["x"], id="lost-node-unknown-fails"),
        pytest.param(make_vmi("Scheduled", node="n1"), LOST, "Failed", "NodeUnresponsive", None,
                     id="lost-node-scheduled-fails"),
    ],
)
def test_transitions(vmi, health, phase, reason, finalizers):
    new = as_dict(compute_vmi_update(vmi, node_health=health, now=NOW))
    assert new["status"]["phase"] == phase
    assert new["status"].get("reason") == reason
    assert new["metadata"].get("finalizers") == finalizers


@pytest.mark.parametrize(
    ("vmi", "health"),
    [
        pytest.param(make_vmi("Scheduling"), UP, id="scheduling-is-the-schedulers"),
        pytest.param(make_vmi("Running", node="n1"), UP, id="running-is-the-handlers"),
        pytest.param(make_vmi("Running", node="n1", deleting=True, finalizers=[FINALIZER]), UP,
                     id="deleting-on-live-node-is-the-handlers"),
        pytest.param(make_vmi("Succeeded", node="n1"), SILENT, id="final-without-finalizer"),
        pytest.param(make_vmi("Failed", node="n1"), LOST, id="final-on-lost-node"),
    ],
)
def test_nothing_to_write(vmi, health):
    assert compute_vmi_update(vmi, node_health=health, now=NOW) is None


def test_final_vmi_loses_only_the_controller_finalizer():
    vmi = make_vmi("Succeeded", node="n1", deleting=True, finalizers=["kubevirt.io/virtualMachineControllerFinalize",
                                                                       FINALIZER])
    new = as_dict(compute_vmi_update(vmi, node_health=UP, now=NOW))
    assert new["metadata"]["finalizers"] == ["kubevirt.io/virtualMachineControllerFinalize"]
    assert new["status"] == as_dict(vmi)["status"]


def test_lost_node_vmi_reports_ready_false_node_unresponsive():
    new = as_dict(compute_vmi_update(make_vmi("Unknown", node="n1"), node_health=LOST, now=NOW))
    ready = [c for c in new["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("False", "NodeUnresponsive")
    assert new["status"]["phaseTransitionTimestamps"] == [
        {"phase": "Failed", "phaseTransitionTimestamp": "2026-01-02T03:04:05.250000Z"}]


def test_unknown_stays_unknown_without_a_second_write():
    first = compute_vmi_update(make_vmi("Running", node="n1"), node_health=SILENT, now=NOW)
    assert compute_vmi_update(first, node_health=SILENT, now=NOW + timedelta(seconds=30)) is None
