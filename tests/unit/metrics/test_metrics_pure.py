"""Pure parts of shared.metrics, shared.events_recorder, the events route and the VMI observer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import make_mocked_request

from services.virt_api.events_route import compute_event_table, is_event_selected, split_event_selector
from services.virt_controller.observer import compute_vmi_transition_events
from shared import metrics, request_metrics
from shared.errors import BadRequest
from shared.events_recorder import compute_dedupe_key, compute_event, compute_involved_object, field_of

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def vmi(phase, *, node="n1", deleting=False, unschedulable=None, stamps=()):
    meta = {"name": "v", "namespace": "ns", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    status = {"phase": phase, "nodeName": node,
              "phaseTransitionTimestamps": [{"phase": p, "phaseTransitionTimestamp": t} for p, t in stamps]}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": unschedulable}]
    return {"kind": "VirtualMachineInstance", "metadata": meta, "status": status}


@pytest.mark.parametrize(("method", "path", "expected"), [
    pytest.param("GET", "/api/v1/namespaces/d/events", ("list", "", "events", ""), id="list-core"),
    pytest.param("GET", "/api/v1/namespaces/d/events?watch=1", ("watch", "", "events", ""), id="watch"),
    pytest.param("GET", "/apis/kubevirt.io/v1/namespaces/d/virtualmachines/x",
                 ("get", "kubevirt.io", "virtualmachines", ""), id="get"),
    pytest.param("PUT", "/apis/kubevirt.io/v1/namespaces/d/virtualmachines/x/status",
                 ("update", "kubevirt.io", "virtualmachines", "status"), id="update-status"),
    pytest.param("DELETE", "/apis/kubevirt.io/v1/namespaces/d/virtualmachines",
                 ("deletecollection", "kubevirt.io", "virtualmachines", ""), id="deletecollection"),
    pytest.param("POST", "/api/v1/nodes", ("create", "", "nodes", ""), id="create-cluster-scoped"),
    pytest.param("GET", "/healthz", ("get", "", "", ""), id="non-resource"),
])
def test_request_labels_follow_kube_apiserver(method, path, expected):
    assert request_metrics.compute_request_labels(make_mocked_request(method, path)) == expected


def test_phase_count_labels_read_kubevirt_annotations():
    obj = vmi("Running")
    obj["metadata"]["annotations"] = {"vm.kubevirt.io/os": "fedora", "vm.kubevirt.io/workload": "server"}
    assert metrics.compute_phase_count_labels(obj) == ("n1", "running", "fedora", "server", "<none>", "<none>",
                                                       "<none>")


def test_phase_transition_is_observed_from_the_vmi_timestamps():
    old = vmi("Scheduled", stamps=[("Scheduled", "2026-01-01T00:00:02Z")])
    new = vmi("Running", stamps=[("Scheduled", "2026-01-01T00:00:02Z"), ("Running", "2026-01-01T00:00:07Z")])
    hist = metrics.VMI_PHASE_TRANSITION_FROM_CREATION.labels("Running")
    sum_before = hist._sum.get()
    between_before = metrics.VMI_PHASE_TRANSITION.labels("Running", "Scheduled")._sum.get()
    assert metrics.observe_phase_transition(old, new) == "Running"
    assert hist._sum.get() - sum_before == pytest.approx(7.0)
    assert metrics.VMI_PHASE_TRANSITION.labels("Running", "Scheduled")._sum.get() - between_before == \
        pytest.approx(5.0)
    assert metrics.observe_phase_transition(new, new) is None, "no phase change, nothing observed"
    assert metrics.observe_phase_transition(None, new) is None, "first sight of an object is not a transition"


def test_buckets_are_kubevirts():
    assert metrics.PHASE_TRANSITION_BUCKETS == (0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 90, 120, 180, 300, 600,
                                                1200, 1800, 3600)


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(vmi("Scheduling"), vmi("Scheduled"),
                 [("Normal", "Scheduled", "Successfully assigned ns/v to n1")], id="scheduled"),
    pytest.param(vmi("Scheduled"), vmi("Running"), [("Normal", "Started", "VirtualMachineInstance started.")],
                 id="started"),
    pytest.param(vmi("Running"), vmi("Running", deleting=True), [("Normal", "ShuttingDown", "Signaled Graceful Shutdown")],
                 id="shutting-down"),
    pytest.param(vmi("Running", deleting=True), vmi("Succeeded", deleting=True),
                 [("Normal", "Stopped", "The VirtualMachineInstance was shut down.")], id="stopped"),
    pytest.param(vmi("Running"), vmi("Failed"), [("Warning", "Stopped", "The VirtualMachineInstance crashed.")],
                 id="failed"),
    pytest.param(vmi("Unknown"), {**vmi("Failed"), "status": {**vmi("Failed")["status"], "reason": "NodeUnresponsive"}},
                 [("Normal", "NodeUnresponsive", "virt-handler on node n1 is not responsive, marking VMI as failed")],
                 id="failed-on-lost-node"),
    pytest.param(vmi("Scheduling"), vmi("Scheduling", unschedulable="0/1 nodes: memory"),
                 [("Warning", "FailedScheduling", "0/1 nodes: memory")], id="unschedulable"),
    pytest.param(vmi("Scheduling", unschedulable="x"), vmi("Scheduling", unschedulable="x"), [],
                 id="still-unschedulable-is-no-transition"),
    pytest.param(vmi("Running"), vmi("Running"), [], id="reconcile-without-change"),
    pytest.param(None, vmi("Running"), [], id="first-listing"),
    pytest.param(vmi("Running"), None, [], id="deleted"),
])
def test_vmi_transition_events(old, new, expected):
    assert compute_vmi_transition_events(old, new) == expected


def test_event_shape_and_ordered_names():
    obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": "vm1", "namespace": "ns", "uid": "u", "resourceVersion": "4"}}
    ref = compute_involved_object(obj)
    first = compute_event(ref, "Normal", "SuccessfulCreate", "m", component="virt-controller", host=None, now=NOW)
    second = compute_event(ref, "Normal", "SuccessfulCreate", "m", component="virt-controller", host=None, now=NOW)
    assert first["involvedObject"] == {"kind": "VirtualMachine", "namespace": "ns", "name": "vm1", "uid": "u",
                                       "apiVersion": "kubevirt.io/v1", "resourceVersion": "4"}
    assert (first["count"], first["firstTimestamp"], first["lastTimestamp"]) == (1, "2026-01-01T12:00:00Z",
                                                                                  "2026-01-01T12:00:00Z")
    assert first["metadata"]["namespace"] == "ns" and first["source"] == {"component": "virt-controller"}
    assert first["metadata"]["name"].startswith("vm1.") and first["metadata"]["name"] < second["metadata"]["name"]
    assert compute_dedupe_key(ref, "Normal", "R", "m") == ("u", "Normal", "R", "m")
    with pytest.raises(ValueError):
        compute_event(ref, "Error", "R", "m", component="c", host=None, now=NOW)


@pytest.mark.parametrize(("selector", "store_part", "terms"), [
    pytest.param(None, None, [], id="none"),
    pytest.param("involvedObject.name=vm1,involvedObject.namespace=ns,involvedObject.kind=VirtualMachine,"
                 "involvedObject.uid=u", None,
                 [("involvedObject.name", "=", "vm1"), ("involvedObject.namespace", "=", "ns"),
                  ("involvedObject.kind", "=", "VirtualMachine"), ("involvedObject.uid", "=", "u")],
                 id="kubectl-describe"),
    pytest.param("metadata.name=e1,type!=Normal", "metadata.name=e1", [("type", "!=", "Normal")], id="mixed"),
])
def test_event_field_selectors_split(selector, store_part, terms):
    assert split_event_selector(selector) == (store_part, terms)


def test_unknown_event_selector_is_a_bad_request():
    with pytest.raises(BadRequest, match="spec.nodeName"):
        split_event_selector("spec.nodeName=x")


def test_event_selection_and_table():
    ev = compute_event({"kind": "VirtualMachine", "name": "vm1", "namespace": "ns", "uid": "u"}, "Warning",
                       "FailedCreate", "boom", component="virt-controller", host="h", now=NOW)
    ev["count"] = 3
    assert is_event_selected(ev, [("involvedObject.name", "=", "vm1"), ("type", "=", "Warning")])
    assert not is_event_selected(ev, [("reason", "!=", "FailedCreate")])
    assert field_of(ev, "source") == "virt-controller"
    table = compute_event_table([ev], "None", datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc))
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Last Seen", "Type", "Reason", "Object",
                                                             "Message"]
    assert table["rows"][0]["cells"][1:] == ["30s (x3)", "Warning", "FailedCreate", "virtualmachine/vm1", "boom"]
