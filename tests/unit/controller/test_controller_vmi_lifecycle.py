"""The VMI controller's transitions and the node heartbeat rule (pure, fake clock)."""
from datetime import datetime, timedelta, timezone

import pytest

from controller_objects import as_dict, vmi as typed_vmi
from services.virt_controller.vmi_lifecycle import compute_vmi_update, is_node_responsive

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
    new = as_dict(compute_vmi_update(make_vmi("Pending"), node_responsive=True, now=NOW))
    assert new["metadata"]["finalizers"] == [FINALIZER]
    assert new["status"]["phase"] == "Scheduling"
    assert new["status"]["phaseTransitionTimestamps"] == [
        {"phase": "Scheduling", "phaseTransitionTimestamp": "2026-01-02T03:04:05.250000Z"}]
    assert "conditions" not in new["status"]


@pytest.mark.parametrize(
    ("vmi", "responsive", "phase", "reason", "finalizers"),
    [
        pytest.param(make_vmi("", deleting=True, finalizers=[FINALIZER]), True, "Failed", "DeletedBeforeStart", None,
                     id="deleted-before-processing"),
        pytest.param(make_vmi("Scheduling", deleting=True, finalizers=[FINALIZER, "x"]), True, "Failed",
                     "DeletedWhileScheduling", ["x"], id="deleted-while-scheduling-keeps-others"),
        pytest.param(make_vmi("Running", node="n1", deleting=True, finalizers=[FINALIZER]), False, "Failed",
                     "NodeUnresponsive", None, id="deleted-on-dead-node-fails"),
        pytest.param(make_vmi("Running", node="n1"), False, "Unknown", None, None, id="dead-node-unknown"),
        pytest.param(make_vmi("Scheduled", node="n1"), False, "Unknown", None, None, id="dead-node-scheduled"),
    ],
)
def test_transitions(vmi, responsive, phase, reason, finalizers):
    new = as_dict(compute_vmi_update(vmi, node_responsive=responsive, now=NOW))
    assert new["status"]["phase"] == phase
    assert new["status"].get("reason") == reason
    assert new["metadata"].get("finalizers") == finalizers


@pytest.mark.parametrize(
    ("vmi", "responsive"),
    [
        pytest.param(make_vmi("Scheduling"), True, id="scheduling-is-the-schedulers"),
        pytest.param(make_vmi("Running", node="n1"), True, id="running-is-the-handlers"),
        pytest.param(make_vmi("Running", node="n1", deleting=True, finalizers=[FINALIZER]), True,
                     id="deleting-on-live-node-is-the-handlers"),
        pytest.param(make_vmi("Succeeded", node="n1"), False, id="final-without-finalizer"),
    ],
)
def test_nothing_to_write(vmi, responsive):
    assert compute_vmi_update(vmi, node_responsive=responsive, now=NOW) is None


def test_final_vmi_loses_only_the_controller_finalizer():
    vmi = make_vmi("Succeeded", node="n1", deleting=True, finalizers=["kubevirt.io/virtualMachineControllerFinalize",
                                                                       FINALIZER])
    new = as_dict(compute_vmi_update(vmi, node_responsive=True, now=NOW))
    assert new["metadata"]["finalizers"] == ["kubevirt.io/virtualMachineControllerFinalize"]
    assert new["status"] == as_dict(vmi)["status"]


def test_unknown_stays_unknown_without_a_second_write():
    first = compute_vmi_update(make_vmi("Running", node="n1"), node_responsive=False, now=NOW)
    assert compute_vmi_update(first, node_responsive=False, now=NOW + timedelta(seconds=30)) is None


def node(ready="True", heartbeat="2026-01-02T03:04:00Z", annotation=None):
    meta = {"name": "n1"}
    if annotation:
        meta["annotations"] = {"kubevirt.io/heartbeat": annotation}
    conditions = [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}] if ready else []
    return {"metadata": meta, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("the_node", "seconds_later", "responsive"),
    [
        pytest.param(node(), 5, True, id="fresh"),
        pytest.param(node(), 40, True, id="exactly-at-timeout"),
        pytest.param(node(), 41, False, id="past-timeout"),
        pytest.param(node(ready="Unknown"), 1, False, id="ready-unknown"),
        pytest.param(node(ready=None, annotation="2026-01-02T03:04:00Z"), 10, True, id="annotation-heartbeat"),
        pytest.param(node(heartbeat="2026-01-02T03:00:00Z", annotation="2026-01-02T03:04:00Z"), 10, True,
                     id="newest-of-both"),
        pytest.param(node(ready=None), 1, False, id="no-heartbeat-at-all"),
        pytest.param(None, 0, False, id="node-missing"),
    ],
)
def test_node_responsiveness_on_a_fake_clock(the_node, seconds_later, responsive):
    at = datetime(2026, 1, 2, 3, 4, 0, tzinfo=timezone.utc) + timedelta(seconds=seconds_later)
    assert is_node_responsive(the_node, at, timeout=40) is responsive
