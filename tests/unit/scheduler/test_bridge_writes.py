"""What scheduler-bridge writes on a VMI (pure parts of the service)."""

from datetime import datetime, timezone

import msgspec

from shared.api.decoding import encode_object
from services.scheduler_bridge.placement import holds_node
from services.scheduler_bridge.vmi_writes import (
    compute_placed_vmi,
    compute_unschedulable_status,
    is_waiting_for_node,
)
from shared.api.vmi import VirtualMachineInstance

NOW = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 1, 12, 0, 9, tzinfo=timezone.utc)


def vmi(phase="Scheduling", deletion_timestamp=None, **status):
    meta = {"name": "v", "namespace": "default", "labels": {"app": "x"}}
    if deletion_timestamp:
        meta["deletionTimestamp"] = deletion_timestamp
    return msgspec.convert({"metadata": meta, "spec": {"domain": {}},
                            "status": {"phase": phase, "phaseTransitionTimestamps": [{"phase": phase}], **status}},
                           VirtualMachineInstance)


def with_status(status):
    return msgspec.convert({"spec": {"domain": {}}, "status": encode_object(status)}, VirtualMachineInstance)


def test_placement_sets_node_label_phase_and_drops_unschedulable():
    waiting = vmi(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                              {"type": "Other", "status": "True"}])
    placed = encode_object(compute_placed_vmi(waiting, "n1", NOW))
    assert placed["status"]["nodeName"] == "n1"
    assert placed["status"]["phase"] == "Scheduled"
    assert placed["metadata"]["labels"] == {"app": "x", "kubevirt.io/nodeName": "n1"}
    assert placed["status"]["phaseTransitionTimestamps"][-1] == {
        "phase": "Scheduled", "phaseTransitionTimestamp": "2026-01-01T12:00:00.123456Z"}
    assert placed["status"]["conditions"] == [{"type": "Other", "status": "True"}]
    assert waiting.status.phase == "Scheduling"  # input untouched


def test_unschedulable_condition_is_written_once_per_message():
    first_status = compute_unschedulable_status(vmi(), "0/1 nodes are available: 1 Insufficient memory.", NOW)
    first = encode_object(first_status)
    (cond,) = first["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    assert cond["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert compute_unschedulable_status(with_status(first_status), cond["message"], LATER) is None
    changed = encode_object(compute_unschedulable_status(with_status(first_status),
                                                         "0/2 nodes are available: 2 Insufficient cpu.", LATER))
    assert changed["conditions"][0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"  # still False since then


def test_which_vmis_wait_and_which_hold_a_node():
    assert is_waiting_for_node(vmi())
    assert not is_waiting_for_node(vmi(nodeName="n1"))
    deleting = vmi(deletion_timestamp="2026-01-01T00:00:00Z")
    assert not is_waiting_for_node(deleting)
    assert holds_node(vmi("Running", nodeName="n1")) == "n1"
    assert holds_node(vmi("Failed", nodeName="n1")) is None
