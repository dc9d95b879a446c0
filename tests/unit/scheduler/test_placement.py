"""plan_placement: the pure scheduling decision, table-driven."""

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from services.scheduler_bridge.placement import (
    compute_fit_error_message,
    compute_placed_totals,
    is_taint_tolerated,
    plan_placement,
)
from services.scheduler_bridge.resource_requests import Requests
from shared.api.core import Toleration
from shared.api.node import Node
from shared.api.vmi import VirtualMachineInstance

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
GI = 2**30


def make_node(name, *, cpu="4", memory="8Gi", labels=None, taints=None, ready="True",
              heartbeat=NOW, unschedulable=False):
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true", **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": cpu, "memory": memory}, "capacity": {"cpu": cpu, "memory": memory},
                   "conditions": [{"type": "Ready", "status": ready,
                                   "lastHeartbeatTime": heartbeat.strftime("%Y-%m-%dT%H:%M:%SZ")}]},
    }
    if unschedulable:
        node["spec"]["unschedulable"] = True
    return msgspec.convert(node, Node)


def make_vmi(name="vmi", *, memory="1Gi", cpu=None, cores=None, node_selector=None, tolerations=None,
             affinity=None, node_name=None, phase="Scheduling"):
    domain = {"resources": {"requests": {"memory": memory}}, "devices": {}}
    if cpu:
        domain["resources"]["requests"]["cpu"] = cpu
    if cores:
        domain["cpu"] = {"cores": cores}
    spec = {"domain": domain}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    status = {"phase": phase}
    if node_name:
        status["nodeName"] = node_name
    return msgspec.convert({"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status},
                           VirtualMachineInstance)


def required_affinity(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


CASES = [
    pytest.param(make_vmi(), [make_node("n1")], {}, "n1", None, id="fits-on-the-only-node"),
    pytest.param(make_vmi(memory="16Gi"), [make_node("n1"), make_node("n2")], {}, None,
                 "0/2 nodes are available: 2 Insufficient memory.", id="too-much-memory-everywhere"),
    pytest.param(make_vmi(cpu="8"), [make_node("n1")], {}, None,
                 "0/1 nodes are available: 1 Insufficient cpu.", id="too-much-cpu"),
    pytest.param(make_vmi(cpu="8", memory="16Gi"), [make_node("n1")], {}, None,
                 "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
                 id="both-resources-reported"),
    pytest.param(make_vmi(memory="6Gi"), [make_node("n1"), make_node("n2")], {"n1": Requests(0, 4 * GI)}, "n2", None,
                 id="placed-vmis-reduce-free-memory"),
    pytest.param(make_vmi(memory="1Gi"), [make_node("n1"), make_node("n2", memory="16Gi")], {}, "n2", None,
                 id="least-allocated-node-wins"),
    pytest.param(make_vmi(memory="1Gi"), [make_node("b"), make_node("a")], {}, "a", None,
                 id="ties-broken-by-name"),
    pytest.param(make_vmi(node_selector={"disk": "ssd"}), [make_node("n1"), make_node("n2", labels={"disk": "ssd"})],
                 {}, "n2", None, id="node-selector"),
    pytest.param(make_vmi(node_selector={"disk": "ssd"}), [make_node("n1")], {}, None,
                 "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                 id="node-selector-matches-nothing"),
    pytest.param(make_vmi(), [make_node("n1", labels={"kubevirt.io/schedulable": "false"})], {}, None,
                 "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                 id="node-marked-not-schedulable-by-kubevirt"),
    pytest.param(make_vmi(affinity=required_affinity(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]}]})),
        [make_node("n1", labels={"zone": "a"}), make_node("n2", labels={"zone": "c"})], {}, "n2", None,
        id="required-affinity-in"),
    pytest.param(make_vmi(affinity=required_affinity(
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})),
        [make_node("n1", labels={"zone": "a"}), make_node("n2")], {}, "n2", None,
        id="required-affinity-notin-matches-missing-label"),
    pytest.param(make_vmi(affinity=required_affinity(
        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})),
        [make_node("n1"), make_node("n2")], {}, "n1", None, id="affinity-terms-are-ored-matchfields"),
    pytest.param(make_vmi(affinity=required_affinity(
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]})),
        [make_node("n1", labels={"cores": "4"}), make_node("n2", labels={"cores": "16"})], {}, "n2", None,
        id="affinity-gt"),
    pytest.param(make_vmi(), [make_node("n1", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])],
                 {}, None, "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}.",
                 id="untolerated-taint"),
    pytest.param(make_vmi(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db",
                                        "effect": "NoSchedule"}]),
                 [make_node("n1", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])],
                 {}, "n1", None, id="tolerated-taint"),
    pytest.param(make_vmi(), [make_node("n1", taints=[{"key": "soft", "effect": "PreferNoSchedule"}])],
                 {}, "n1", None, id="prefer-no-schedule-does-not-filter"),
    pytest.param(make_vmi(), [make_node("n1", ready="False")], {}, None,
                 "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
                 id="not-ready-node"),
    pytest.param(make_vmi(), [make_node("n1", heartbeat=NOW - timedelta(minutes=5)), make_node("n2")], {}, "n2", None,
                 id="stale-heartbeat-node-is-skipped"),
    pytest.param(make_vmi(), [make_node("n1", unschedulable=True)], {}, None,
                 "0/1 nodes are available: 1 node(s) were unschedulable.", id="cordoned-node"),
    pytest.param(make_vmi(memory="16Gi"), [make_node("n1", unschedulable=True), make_node("n2"), make_node("n3")], {},
                 None, "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory.",
                 id="mixed-reasons-sorted-with-counts"),
    pytest.param(make_vmi(), [], {}, None, "no nodes available to schedule pods", id="no-nodes"),
]


@pytest.mark.parametrize("vmi, nodes, placed, expected_node, expected_message", CASES)
def test_plan_placement_chooses_the_node_kubernetes_would(vmi, nodes, placed, expected_node, expected_message):
    decision = plan_placement(vmi, nodes, placed, now=NOW)
    assert decision.node_name == expected_node
    if expected_message is not None:
        assert decision.message == expected_message
        assert not decision.is_placed


def test_cpu_request_defaults_to_a_tenth_of_the_vcpus():
    # 40 vCPUs at KubeVirt's cpuAllocationRatio 10 ask 4 CPUs: fits exactly on a 4-CPU node, not on 3.
    vmi = make_vmi(cores=40)
    assert plan_placement(vmi, [make_node("n1", cpu="4")], {}, now=NOW).node_name == "n1"
    assert plan_placement(vmi, [make_node("n1", cpu="3900m")], {}, now=NOW).message == \
        "0/1 nodes are available: 1 Insufficient cpu."


def test_placed_totals_count_only_live_vmis_with_a_node():
    vmis = [make_vmi("a", memory="1Gi", node_name="n1", phase="Running"),
            make_vmi("b", memory="2Gi", node_name="n1", phase="Scheduled"),
            make_vmi("c", memory="4Gi", node_name="n1", phase="Succeeded"),
            make_vmi("d", memory="8Gi")]
    assert compute_placed_totals(vmis) == {"n1": Requests(cpu_millicores=200, memory_bytes=3 * GI)}


@pytest.mark.parametrize("taint, tolerations, expected", [
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"operator": "Exists"}], True,
                 id="exists-without-key-tolerates-all"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "operator": "Exists",
                                                                       "effect": "NoExecute"}], False,
                 id="effect-must-match"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "value": "w"}], False,
                 id="equal-compares-values"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "value": "v"}], True,
                 id="equal-default-operator-any-effect"),
])
def test_taint_toleration_follows_core_v1(taint, tolerations, expected):
    assert is_taint_tolerated(taint, msgspec.convert(tolerations, list[Toleration])) is expected


def test_fit_error_message_counts_each_node_once_per_reason():
    assert compute_fit_error_message(2, {"a": ("Insufficient cpu", "Insufficient memory"),
                                         "b": ("Insufficient memory",)}) == \
        "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."
