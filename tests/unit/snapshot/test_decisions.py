"""Table tests of virt-snapshot's pure decisions: indications, the snapshot plan, the content step
and status, Go durations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.virt_snapshot.content_decision import (
    BeginAction,
    ContentStep,
    begin_action,
    compute_polled_status,
    compute_request,
    content_step,
)
from services.virt_snapshot.indications import SourceState, compute_indications, compute_source_state
from services.virt_snapshot.snapshot_decision import decide, parse_go_duration
from services.virt_snapshot.volume_snapshotter import CopyStatus
from shared.informer import decode_as
from shared.api.snapshot import VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def _vm(status=None, finalizers=None, volumes=("data",)):
    vols = [{"name": v, "persistentVolumeClaim": {"claimName": v}} for v in volumes]
    vols.append({"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}})
    meta = {"name": "vm", "namespace": "ns", "uid": "vm-uid"}
    if finalizers:
        meta["finalizers"] = finalizers
    return decode_as(VirtualMachine, {"metadata": meta,
                                          "spec": {"template": {"spec": {"domain": {"devices": {}},
                                                                         "volumes": vols}}},
                                          "status": status or {}})


def _vmi(phase="Running", agent=True, paused=False, frozen=False):
    conds = [{"type": "AgentConnected", "status": "True"}] if agent else []
    if paused:
        conds.append({"type": "Paused", "status": "True"})
    status = {"phase": phase, "nodeName": "n1", "conditions": conds}
    if frozen:
        status["fsFreezeStatus"] = "frozen"
    return decode_as(VirtualMachineInstance, {"metadata": {"name": "vm", "namespace": "ns", "uid": "vmi-uid"},
                                                  "spec": {"domain": {"devices": {}}}, "status": status})


def _pvc(phase="Bound"):
    return decode_as(PersistentVolumeClaim, {"metadata": {"name": "data", "namespace": "ns"},
                                                 "spec": {"accessModes": ["ReadWriteOnce"]},
                                                 "status": {"phase": phase}})


def _snap(status=None, deleting=False, finalizers=("snapshot.kubevirt.io/vmsnapshot-protection",),
          age=10.0, deadline=None, policy=None):
    meta = {"name": "s", "namespace": "ns", "uid": "su",
            "creationTimestamp": (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if deleting:
        meta["deletionTimestamp"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
    if deadline:
        spec["failureDeadline"] = deadline
    if policy:
        spec["deletionPolicy"] = policy
    return decode_as(VirtualMachineSnapshot, {"metadata": meta, "spec": spec, **({"status": status} if status
                                                                                   is not None else {})})


def _content(status=None, deleting=False):
    meta = {"name": "vmsnapshot-content-su", "namespace": "ns",
            "ownerReferences": [{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
                                 "name": "s", "uid": "su"}]}
    if deleting:
        meta["deletionTimestamp"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    return decode_as(VirtualMachineSnapshotContent, {
        "metadata": meta,
        "spec": {"virtualMachineSnapshotName": "s",
                 "source": {"virtualMachine": {"metadata": {"name": "vm"}}},
                 "volumeBackups": [{"volumeName": "data", "volumeSnapshotName": "vmsnapshot-su-volume-data",
                                    "persistentVolumeClaim": {"metadata": {"name": "data"}}}]},
        **({"status": status} if status else {})})


@pytest.mark.parametrize("vmi,pvc,want", [
    (None, "Bound", ["PartialSnapshot"]),
    (_vmi(), "Bound", ["GuestAgent", "Online", "PartialSnapshot"]),
    (_vmi(agent=False), "Bound", ["NoGuestAgent", "Online", "PartialSnapshot"]),
    (_vmi(paused=True), "Bound", ["Online", "Paused", "PartialSnapshot"]),
    (_vmi(phase="Scheduling"), "Bound", ["PartialSnapshot"]),
    (None, "Pending", ["PartialSnapshot"]),
])
def test_indications(vmi, pvc, want):
    state = compute_source_state(_vm(), vmi, {"data": _pvc(pvc)})
    assert compute_indications(state) == want
    assert [v.volume_name for v in state.included] == (["data"] if pvc == "Bound" else [])
    assert state.excluded == (["ci"] if pvc == "Bound" else ["data", "ci"])
    assert state.needs_freeze == (vmi is not None and want[0] == "GuestAgent")


LOCKED = {"snapshotInProgress": "s"}
SRC_FIN = ["snapshot.kubevirt.io/snapshot-source-protection"]


@pytest.mark.parametrize("name,snap,vm,content,want", [
    ("new snapshot gets its finalizer", _snap(finalizers=()), _vm(), None, {"add_finalizer": True}),
    ("first status, no lock before a status", _snap(), _vm(), None, {"lock": False, "status_phase": "InProgress"}),
    ("locks the free source", _snap({"phase": "InProgress"}), _vm(), None, {"lock": True}),
    ("busy source waits", _snap({"phase": "InProgress"}), _vm({"snapshotInProgress": "other"}), None,
     {"lock": False, "progressing": ("False", 'Source not locked snapshot "other" in progress')}),
    ("restore in progress waits", _snap({"phase": "InProgress"}), _vm({"restoreInProgress": "r"}), None,
     {"lock": False}),
    ("locked -> content", _snap({"phase": "InProgress"}), _vm(LOCKED, SRC_FIN), None,
     {"create_content": True, "progressing": ("True", "Source locked and operation in progress")}),
    ("missing source", _snap({"phase": "InProgress"}), None, None,
     {"progressing": ("False", "Source does not exist")}),
    ("created -> Succeeded, still locked until ready", _snap({"phase": "InProgress"}), _vm(LOCKED, SRC_FIN),
     _content({"creationTime": "2026-01-01T11:59:55Z", "readyToUse": False}),
     {"status_phase": "Succeeded", "unlock": False}),
    ("ready -> unlock", _snap({"phase": "Succeeded", "creationTime": "x"}), _vm(LOCKED, SRC_FIN),
     _content({"creationTime": "x", "readyToUse": True}), {"unlock": True, "ready": ("True", "Ready")}),
    ("deadline -> Failed, delete content, thaw", _snap({"phase": "InProgress"}, age=400), _vm(LOCKED, SRC_FIN),
     _content(), {"status_phase": "Failed", "delete_content": True, "unfreeze": True}),
    ("no deadline with 0s", _snap({"phase": "InProgress"}, age=4000, deadline="0s"), _vm(LOCKED, SRC_FIN),
     _content(), {"status_phase": "InProgress", "delete_content": False}),
    ("delete policy deletes ready content", _snap({"phase": "Succeeded", "readyToUse": True}, deleting=True),
     _vm(), _content({"readyToUse": True}), {"delete_content": True, "remove_finalizer": True}),
    ("retain keeps ready content", _snap({"phase": "Succeeded", "readyToUse": True}, deleting=True,
                                         policy="Retain"),
     _vm(), _content({"readyToUse": True}), {"delete_content": False, "retain_content": True,
                                             "remove_finalizer": True}),
    ("retain still deletes unready content", _snap({"phase": "InProgress"}, deleting=True, policy="Retain"),
     _vm(LOCKED, SRC_FIN), _content(), {"delete_content": True, "status_phase": "Deleting"}),
])
def test_snapshot_plan(name, snap, vm, content, want):
    vmi = _vmi() if name.startswith("deadline") else None
    state = compute_source_state(vm, vmi, {"data": _pvc()}) if vm is not None else None
    plan = decide(snap, vm, state, content, NOW)
    for key, value in want.items():
        if key == "status_phase":
            assert (plan.status or snap.status).phase == value, name
        elif key in ("progressing", "ready"):
            ctype = "Progressing" if key == "progressing" else "Ready"
            cond = next(c for c in (plan.status or snap.status).conditions if c.type == ctype)
            assert (cond.status, cond.reason) == value, name
        else:
            assert getattr(plan, key) == value, name


def test_failed_snapshot_says_deadline_exceeded():
    plan = decide(_snap({"phase": "InProgress"}, age=400), _vm(LOCKED, SRC_FIN), None,
                  _content({"error": {"message": "agent timeout"}}), NOW)
    assert plan.status.error.message == "snapshot deadline exceeded"
    failure = next(c for c in plan.status.conditions if c.type == "Failure")
    assert (failure.status, failure.reason) == ("True", "snapshot deadline exceeded")


@pytest.mark.parametrize("content,snap,terminating,want", [
    (_content(), _snap({"phase": "InProgress"}), False, ContentStep.BEGIN),
    (_content({"creationTime": "t"}), _snap({"phase": "Succeeded"}), False, ContentStep.POLL),
    (_content({"creationTime": "t", "readyToUse": True}), _snap(), False, ContentStep.DONE),
    (_content(), None, False, ContentStep.ABANDON),
    (_content(), _snap(), True, ContentStep.ABANDON),
    (_content({"readyToUse": True}), None, False, ContentStep.DONE),
    (_content(deleting=True), _snap(), False, ContentStep.CLEANUP),
])
def test_content_step(content, snap, terminating, want):
    assert content_step(content, snap, terminating) == want


@pytest.mark.parametrize("copies,ready,error", [
    ([CopyStatus("vmsnapshot-su-volume-data", True)], True, None),
    ([CopyStatus("vmsnapshot-su-volume-data", False)], False, None),
    ([CopyStatus("vmsnapshot-su-volume-data", False, error="disk gone")], False,
     "VolumeSnapshot vmsnapshot-su-volume-data error: disk gone"),
])
def test_polled_status(copies, ready, error):
    status = compute_polled_status(_content({"creationTime": "t"}), copies, "now")
    assert status.ready_to_use is ready
    assert (status.error.message if status.error else None) == error
    assert status.volume_snapshot_status[0].creation_time == "t"


def test_request_goes_to_the_node_only_when_online():
    online = _snap({"indications": ["GuestAgent", "Online"]})
    state = compute_source_state(_vm(), _vmi(), {"data": _pvc()})
    request = compute_request(_content(), online, state)
    assert (request.node, request.vmi_name, request.snapshot_uid) == ("n1", "vm", "su")
    assert [(v.volume_name, v.claim_name, v.volume_snapshot_name) for v in request.volumes] == [
        ("data", "data", "vmsnapshot-su-volume-data")]
    assert compute_request(_content(), _snap({}), state).node is None


@pytest.mark.parametrize("text,seconds", [("5m", 300), ("0s", 0), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25),
                                          ("0", 0)])
def test_go_duration(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "1h 2m"])
def test_go_duration_invalid(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


_RUNNING = dict(online=True, node="node01", vmi_name="vm1", vmi_uid="u1")


@pytest.mark.parametrize("indications,state,want", [
    # GuestAgent: freeze on every attempt, also when the VMI already says frozen (the handler
    # reports frozen while the deadline of a timed-out Freeze is armed: no proof of quiescing)
    (["Online", "GuestAgent"], SourceState(**_RUNNING), BeginAction.FREEZE_THEN_COPY),
    (["Online", "GuestAgent"], SourceState(frozen=True, **_RUNNING), BeginAction.FREEZE_THEN_COPY),
    # no quiescing asked
    (["Online", "NoGuestAgent"], SourceState(**_RUNNING), BeginAction.COPY),
    (["Online", "Paused"], SourceState(paused=True, **_RUNNING), BeginAction.COPY),
    ([], None, BeginAction.COPY),
    # the guest no longer runs: nothing to quiesce
    (["Online", "GuestAgent"], SourceState(online=False), BeginAction.COPY),
    (["Online", "GuestAgent"], None, BeginAction.COPY),
])
def test_begin_freezes_first_whenever_the_guest_must_be_quiesced(indications, state, want):
    assert begin_action(_snap({"indications": indications}), state) == want


@pytest.mark.parametrize("polls,delay", [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)])
def test_unfinished_copies_are_looked_at_soon_then_once_a_second(polls, delay):
    from services.virt_snapshot.content_decision import compute_poll_delay
    assert compute_poll_delay(polls) == pytest.approx(delay)
