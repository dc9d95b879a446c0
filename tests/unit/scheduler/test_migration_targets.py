"""plan_migration_target and the VMIM writes it leads to: the pure target decision, table-driven,
and the target reservations of PlacementBook."""

from datetime import datetime, timezone

import msgspec
import pytest

from services.scheduler_bridge.accounting import PlacementBook
from services.scheduler_bridge.migration_targets import (
    compute_migration_node_selector,
    compute_status_with_target,
    is_awaiting_target,
    plan_migration_target,
    reserved_target,
    vmi_key_of,
)
from services.scheduler_bridge.placement import compute_node_facts
from services.scheduler_bridge.resource_requests import Requests, compute_vmi_requests
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.node import Node
from shared.api.vmi import VirtualMachineInstance

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
GI = 2**30


def node(name, *, memory="8Gi", labels=None, taints=None, ready="True", unschedulable=False):
    body = {"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true", **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": "4", "memory": memory},
                       "conditions": [{"type": "Ready", "status": ready,
                                       "lastHeartbeatTime": "2026-01-01T12:00:00Z"}]}}
    return compute_node_facts(msgspec.convert(body, Node), NOW)


def vmi(*, on="a", memory="1Gi", node_selector=None, phase="Running", tolerations=None):
    spec = {"domain": {"resources": {"requests": {"memory": memory}}, "devices": {}}}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    status = {"phase": phase, **({"nodeName": on} if on else {})}
    return msgspec.convert({"metadata": {"name": "v", "namespace": "ns"}, "spec": spec, "status": status},
                           VirtualMachineInstance)


def vmim(*, phase="Scheduling", added=None, state=None, deleting=False, conditions=None):
    meta = {"name": "m", "namespace": "ns", "uid": "u-m", "resourceVersion": "7"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": phase}
    if state is not None:
        status["migrationState"] = state
    if conditions:
        status["conditions"] = conditions
    spec = {"vmiName": "v", **({"addedNodeSelector": added} if added else {})}
    return msgspec.convert({"metadata": meta, "spec": spec, "status": status}, VirtualMachineInstanceMigration)


def decide(the_vmim, the_vmi, nodes, placed=None):
    return plan_migration_target(the_vmim, the_vmi, nodes, placed or {}, compute_vmi_requests(the_vmi))


CASES = [
    pytest.param(vmim(), vmi(), [node("a"), node("b")], {}, "b", None, id="the-other-node"),
    pytest.param(vmim(), vmi(), [node("a")], {}, None,
                 "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules.", id="never-the-source"),
    pytest.param(vmim(), vmi(), [node("a"), node("b", unschedulable=True), node("c")], {}, "c", None,
                 id="cordoned-node-skipped"),
    pytest.param(vmim(), vmi(), [node("a"), node("b", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]),
                                 node("c")], {}, "c", None, id="tainted-node-skipped"),
    pytest.param(vmim(), vmi(tolerations=[{"key": "k", "operator": "Exists"}]),
                 [node("a"), node("b", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])], {}, "b", None,
                 id="tolerated-taint"),
    pytest.param(vmim(), vmi(), [node("a"), node("b", ready="False"), node("c")], {}, "c", None,
                 id="not-ready-node-skipped"),
    pytest.param(vmim(added={"zone": "z2"}), vmi(),
                 [node("a"), node("b", labels={"zone": "z1"}), node("c", labels={"zone": "z2"}, memory="2Gi")],
                 {}, "c", None, id="added-selector-narrows"),
    pytest.param(vmim(added={"zone": "z2"}), vmi(node_selector={"zone": "z1"}),
                 [node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z1"}),
                  node("c", labels={"zone": "z2"})],
                 {}, "b", None, id="the-vmi-selector-wins-over-the-added-one"),
    pytest.param(vmim(added={"zone": "z9"}), vmi(), [node("a"), node("b", labels={"zone": "z1"})], {}, None,
                 "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                 id="added-selector-matches-nothing-not-even-the-source"),
    pytest.param(vmim(), vmi(memory="4Gi"), [node("a"), node("b", memory="8Gi")], {"b": Requests(0, 6 * GI)},
                 None, "0/2 nodes are available: 1 Insufficient memory, "
                       "1 node(s) didn't match pod anti-affinity rules.", id="no-room"),
    pytest.param(vmim(), vmi(), [node("a", unschedulable=True), node("b", memory="512Mi")], {}, None,
                 "0/2 nodes are available: 1 Insufficient memory, 1 node(s) were unschedulable.",
                 id="cordoned-source-reports-its-first-failing-filter"),
    pytest.param(vmim(), vmi(), [node("a"), node("b"), node("c")], {"b": Requests(0, 4 * GI)}, "c", None,
                 id="least-allocated-wins"),
]


@pytest.mark.parametrize(("the_vmim", "the_vmi", "nodes", "placed", "target", "message"), CASES)
def test_plan_migration_target(the_vmim, the_vmi, nodes, placed, target, message):
    decision = decide(the_vmim, the_vmi, nodes, placed)
    assert decision.target_node == target
    assert decision.source_node == "a"
    if message is not None:
        assert decision.message == message
    assert decision.target_node != "a"


@pytest.mark.parametrize("the_vmi", [vmi(on=None, phase="Scheduling"), vmi(phase="Succeeded"),
                                     vmi(phase="Failed")], ids=["not-placed", "succeeded", "failed"])
def test_nothing_to_decide_for_a_vmi_that_does_not_run(the_vmi):
    assert decide(vmim(), the_vmi, [node("a"), node("b")]) is None


@pytest.mark.parametrize(("the_vmim", "awaiting", "reserves"), [
    (vmim(), True, None),
    (vmim(phase="Pending"), False, None),
    (vmim(deleting=True), False, None),
    (vmim(state={"targetNode": "b"}), False, "b"),
    (vmim(phase="Running", state={"targetNode": "b"}), False, "b"),
    (vmim(phase="Succeeded", state={"targetNode": "b"}), False, None),
    (vmim(phase="Failed", state={"targetNode": "b"}), False, None),
])
def test_awaiting_and_reserving(the_vmim, awaiting, reserves):
    assert is_awaiting_target(the_vmim) is awaiting
    assert reserved_target(the_vmim) == reserves
    assert vmi_key_of(the_vmim) == "ns/v"


def test_merged_selector():
    assert compute_migration_node_selector(vmi(node_selector={"zone": "z1", "a": "1"}),
                                           vmim(added={"zone": "z2", "b": "2"})) == {"zone": "z1", "a": "1", "b": "2"}


def test_status_with_target_keeps_every_other_field():
    cond = [{"type": "migrationAbortRequested", "status": "False"}]
    before = vmim(state={"migrationUid": "u-m", "mode": "PreCopy"}, conditions=cond)
    encoded = msgspec.json.encode(before)
    status = compute_status_with_target(before, "b", "a")
    assert (status.migration_state.target_node, status.migration_state.source_node) == ("b", "a")
    assert status.migration_state.migration_uid == "u-m" and status.migration_state.mode == "PreCopy"
    assert status.phase == "Scheduling" and status.conditions[0].type == "migrationAbortRequested"
    assert msgspec.json.encode(before) == encoded


R = Requests(500, GI)


def test_reservation_counts_on_the_target_until_final_and_once_after_the_switch():
    book = PlacementBook()
    book.observe("ns/v", ("a", R), None)
    book.observe_migration("ns/m", "ns/v", "b")
    assert book.placed() == {"a": R, "b": R}
    book.observe("ns/v", ("b", R), None)  # ownership moved, VMIM not final yet
    assert book.placed() == {"b": R}
    book.observe_migration("ns/m", "ns/v", None)  # final
    assert book.placed() == {"b": R}


def test_reservation_of_a_failed_migration_is_released():
    book = PlacementBook()
    book.observe("ns/v", ("a", R), None)
    book.observe_migration("ns/m", "ns/v", "b")
    book.observe_migration("ns/m", "ns/v", "b")  # repeated events change nothing
    assert book.placed() == {"a": R, "b": R}
    book.observe_migration("ns/m", "ns/v", None)
    assert book.placed() == {"a": R}


def test_reservation_follows_the_vmi():
    book = PlacementBook()
    book.observe_migration("ns/m", "ns/v", "b")  # VMIM seen before its VMI
    assert book.placed() == {}
    book.observe("ns/v", ("a", R), None)
    assert book.placed() == {"a": R, "b": R}
    book.forget("ns/v")  # VMI gone: nothing reserved for it
    assert book.placed() == {}
    book.observe_migration("ns/m", "ns/v", None)
    assert book.placed() == {} and book.reserving_migrations() == {}
