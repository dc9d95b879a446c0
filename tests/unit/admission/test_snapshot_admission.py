"""Snapshot, restore and VM-lock admission as KubeVirt's (pkg/storage/admitters vmsnapshot.go,
vmrestore.go, vm-storage-status.go): every rule, its cause type, field path and message."""

from __future__ import annotations

import copy

import pytest

from shared.admission import admit
from shared.admission.context import AdmissionContext
from shared.admission.restore_rules import (
    BACKEND_STORAGE_MESSAGE,
    admit_restore,
    check_patches,
    compute_restore_store_causes,
)
from shared.admission.snapshot_rules import admit_snapshot
from shared.admission.vm_lock_rules import compute_vm_lock_causes, lock_refusal_message
from shared.api.resources import VIRTUAL_MACHINE_RESTORE, VIRTUAL_MACHINE_SNAPSHOT
from shared.errors import Invalid, StatusCause

CREATE = AdmissionContext(operation="CREATE")


def snapshot(source=None, **spec):
    src = {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"} if source is None else source
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "snap", "namespace": "ns"}, "spec": {"source": src, **spec}}


def restore(target=None, name="restore", **spec):
    tgt = {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"} if target is None else target
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"target": tgt, "virtualMachineSnapshotName": "snap", **spec}}


def causes_of(causes):
    return [(c.reason, c.field, c.message) for c in causes]


@pytest.mark.parametrize("source, expected", [
    ({"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}, []),
    ({"kind": "VirtualMachine", "name": "vm"},
     [("FieldValueNotFound", "spec.source.apiGroup", "missing apiGroup")]),
    ({"apiGroup": "apps", "kind": "VirtualMachine", "name": "vm"},
     [("FieldValueInvalid", "spec.source.apiGroup", "invalid apiGroup")]),
    ({"apiGroup": "kubevirt.io", "kind": "VirtualMachineInstance", "name": "vm"},
     [("FieldValueInvalid", "spec.source.kind", "invalid kind")]),
])
def test_snapshot_create_source_rules(source, expected):
    assert causes_of(admit_snapshot(snapshot(source), CREATE)) == expected


@pytest.mark.parametrize("change, refused", [
    (lambda s: s, False),
    (lambda s: s["metadata"].setdefault("labels", {}).update(a="b"), False),
    (lambda s: s["spec"].update(deletionPolicy="Retain"), True),
    (lambda s: s["spec"]["source"].update(name="other"), True),
])
def test_snapshot_spec_is_immutable_on_update(change, refused):
    old = snapshot()
    new = copy.deepcopy(old)
    change(new)
    causes = admit_snapshot(new, AdmissionContext(operation="UPDATE", old=old))
    assert causes_of(causes) == ([("FieldValueInvalid", "spec", "spec in immutable after creation")] if refused else [])


@pytest.mark.parametrize("deadline, message", [
    ("5m", None), ("0s", None), ("0", None), ("1h30m", None), ("1.5h", None), ("-0s", None),
    ("1d", 'Invalid value: "1d": time: unknown unit "d" in duration "1d"'),
    ("10", 'Invalid value: "10": time: missing unit in duration "10"'),
    ("soon", 'Invalid value: "soon": time: invalid duration "soon"'),
    ("abc", 'Invalid value: "abc": time: invalid duration "abc"'),
    ("-5m", 'Invalid value: "-5m": must be a non-negative duration'),
    ("-1ns", 'Invalid value: "-1ns": must be a non-negative duration'),
])
def test_snapshot_failure_deadline_must_be_a_non_negative_go_duration(deadline, message):
    body = snapshot(failureDeadline=deadline)
    expected = [] if message is None else [("FieldValueInvalid", "spec.failureDeadline", message)]
    assert causes_of(admit_snapshot(body, CREATE)) == expected
    old = snapshot(failureDeadline=deadline)
    assert causes_of(admit_snapshot(body, AdmissionContext(operation="UPDATE", old=old))) == expected


@pytest.mark.parametrize("policy, message", [
    (None, None), ("Delete", None), ("Retain", None),
    ("Maybe", 'Unsupported value: "Maybe": supported values: "Delete", "Retain"'),
    ("delete", 'Unsupported value: "delete": supported values: "Delete", "Retain"'),
    ("", 'Unsupported value: "": supported values: "Delete", "Retain"'),
])
def test_snapshot_deletion_policy_is_kubevirts_enum(policy, message):
    body = snapshot() if policy is None else snapshot(deletionPolicy=policy)
    expected = [] if message is None else [("FieldValueNotSupported", "spec.deletionPolicy", message)]
    assert causes_of(admit_snapshot(body, CREATE)) == expected


def test_snapshot_bad_deadline_through_the_pipeline_is_invalid_at_its_field():
    with pytest.raises(Invalid) as err:
        admit(VIRTUAL_MACHINE_SNAPSHOT, snapshot(failureDeadline="abc"), operation="CREATE")
    status = err.value.to_status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == ('VirtualMachineSnapshot.snapshot.kubevirt.io "snap" is invalid: '
                                 'spec.failureDeadline: Invalid value: "abc": time: invalid duration "abc"')
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "abc": time: invalid duration "abc"',
         "field": "spec.failureDeadline"}]


def test_snapshot_refusal_through_the_pipeline_is_invalid_with_kubevirts_cause():
    with pytest.raises(Invalid) as err:
        admit(VIRTUAL_MACHINE_SNAPSHOT, snapshot({"kind": "VirtualMachine", "name": "vm"}), operation="CREATE")
    status = err.value.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"] == ('VirtualMachineSnapshot.snapshot.kubevirt.io "snap" is invalid: '
                                 "spec.source.apiGroup: missing apiGroup")
    assert status["details"]["causes"] == [
        {"reason": "FieldValueNotFound", "message": "missing apiGroup", "field": "spec.source.apiGroup"}]


@pytest.mark.parametrize("target, expected", [
    ({"kind": "VirtualMachine", "name": "vm"}, [("FieldValueNotFound", "spec.target.apiGroup", "missing apiGroup")]),
    ({"apiGroup": "x.io", "kind": "VirtualMachine", "name": "vm"},
     [("FieldValueInvalid", "spec.target.apiGroup", "invalid apiGroup")]),
    ({"apiGroup": "kubevirt.io", "kind": "VirtualMachinePool", "name": "vm"},
     [("FieldValueInvalid", "spec.target.kind", "invalid kind")]),
])
def test_restore_target_rules(target, expected):
    assert causes_of(admit_restore(restore(target), CREATE)) == expected


@pytest.mark.parametrize("patch, messages", [
    ('{"op": "replace", "path": "/spec/runStrategy", "value": "Always"}', []),
    ('{"op": "add", "path": "/metadata/labels/team", "value": "a"}', []),
    ('{"op": "add", "path": "/metadata/annotations/note", "value": "a"}', []),
    ('{"op": "replace", "path": "/metadata/name", "value": "x"}',
     ['patching is valid only for elements under /spec/ only:  "path": "/metadata/name"']),
    ('{"op": "replace", "path": "/spec/x", "value": "a:b"}',
     ['patch format is not valid - one ":" expected in a single key-value json patch:  "value": "a:b"']),
])
def test_restore_patches_are_limited_to_spec(patch, messages):
    causes = check_patches([patch], "spec.patches")
    assert [c.message for c in causes] == messages
    assert all(c.field == "spec.patches" and c.reason == "FieldValueInvalid" for c in causes)


def test_restore_overrides_and_policies():
    body = restore(volumeRestoreOverrides=[{"restoreName": "x"}, {"volumeName": "disk"}],
                   volumeRestorePolicy="Shuffle", volumeOwnershipPolicy="Nobody")
    assert causes_of(admit_restore(body, CREATE)) == [
        ("FieldValueRequired", "spec.volumeRestoreOverrides[0].volumeName", "must provide a volume name"),
        ("FieldValueRequired", "spec.volumeRestoreOverrides[1]", "must provide at least one overriden field"),
        ("FieldValueInvalid", "spec.volumeRestorePolicy", 'volume restore policy "Shuffle" doesn\'t exist'),
        ("FieldValueInvalid", "spec.volumeOwnershipPolicy", 'volume ownership policy "Nobody" doesn\'t exist'),
    ]
    ok = restore(volumeRestorePolicy="PrefixTargetName", volumeOwnershipPolicy="None",
                 volumeRestoreOverrides=[{"volumeName": "disk", "labels": {}}])
    assert admit_restore(ok, CREATE) == []


@pytest.mark.parametrize("policy, refused", [
    ("StopTarget", False), ("WaitGracePeriod", False), ("FailImmediate", False), ("WaitEventually", False),
    ("Whenever", True), ("stopTarget", True), ("", True),
])
def test_restore_target_readiness_policy_must_exist(policy, refused):
    causes = causes_of(admit_restore(restore(targetReadinessPolicy=policy), CREATE))
    assert causes == ([("FieldValueInvalid", "spec.targetReadinessPolicy",
                        f'target readiness policy "{policy}" doesn\'t exist')] if refused else [])


def test_restore_spec_is_immutable_on_update():
    old = restore()
    new = restore(targetReadinessPolicy="StopTarget")
    assert causes_of(admit_restore(new, AdmissionContext(operation="UPDATE", old=old))) == [
        ("FieldValueInvalid", "spec", "spec in immutable after creation")]
    assert admit_restore(copy.deepcopy(old), AdmissionContext(operation="UPDATE", old=old)) == []


def test_restore_through_the_pipeline():
    with pytest.raises(Invalid) as err:
        admit(VIRTUAL_MACHINE_RESTORE, restore({"apiGroup": "kubevirt.io", "kind": "Pod", "name": "p"}),
              operation="CREATE")
    assert err.value.message == 'VirtualMachineRestore.snapshot.kubevirt.io "restore" is invalid: spec.target.kind: invalid kind'


def stored_snapshot(phase="Succeeded", ready=True, source_uid="uid-vm"):
    return {"metadata": {"name": "snap"}, "status": {"phase": phase, "readyToUse": ready, "sourceUID": source_uid,
                                                     "virtualMachineSnapshotContentName": "content"}}


VM = {"metadata": {"name": "vm", "uid": "uid-vm"}}
FIELD = "spec.virtualMachineSnapshotName"


@pytest.mark.parametrize("snap, expected", [
    (stored_snapshot(), []),
    (None, [(FIELD, 'VirtualMachineSnapshot "snap" does not exist')]),
    (stored_snapshot(phase="InProgress", ready=False), [(FIELD, 'VirtualMachineSnapshot "snap" is not ready to use')]),
    (stored_snapshot(phase="Failed", ready=None), [
        (FIELD, 'VirtualMachineSnapshot "snap" has failed and is invalid to use'),
        (FIELD, 'VirtualMachineSnapshot "snap" is not ready to use')]),
])
def test_restore_needs_a_succeeded_ready_snapshot(snap, expected):
    causes = compute_restore_store_causes(restore(), snap, VM, None, [])
    assert [(c.field, c.message) for c in causes] == expected


def test_one_restore_in_progress_per_target():
    others = [
        {**restore(name="done"), "status": {"complete": True}},
        {**restore(name="running"), "status": {"complete": False}},
        restore(name="fresh"),  # no status yet: in progress
        restore({"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "other"}, name="elsewhere"),
    ]
    causes = compute_restore_store_causes(restore(), stored_snapshot(), VM, None, others)
    assert causes_of(causes) == [
        ("FieldValueInvalid", "spec.target", 'VirtualMachineRestore "running" in progress'),
        ("FieldValueInvalid", "spec.target", 'VirtualMachineRestore "fresh" in progress'),
    ]


@pytest.mark.parametrize("target_vm, refused", [(None, True), ({"metadata": {"uid": "another"}}, True), (VM, False)])
def test_restore_of_a_vm_with_backend_storage_only_onto_its_source(target_vm, refused):
    content = {"spec": {"source": {"virtualMachine": {"spec": {"template": {"spec": {
        "domain": {"devices": {"tpm": {"persistent": True}}}}}}}}}}
    causes = compute_restore_store_causes(restore(), stored_snapshot(), target_vm, content, [])
    assert causes_of(causes) == ([("FieldValueInvalid", "spec", BACKEND_STORAGE_MESSAGE)] if refused else [])


def vm(volumes=("disk",), run_strategy="Always", running=None, snapshot=None, restore_name=None):
    spec = {"template": {"spec": {"volumes": [{"name": v, "persistentVolumeClaim": {"claimName": v}}
                                              for v in volumes], "domain": {"cpu": {"cores": 1}}}}}
    if running is not None:
        spec["running"] = running
    else:
        spec["runStrategy"] = run_strategy
    status = {}
    if snapshot:
        status["snapshotInProgress"] = snapshot
    if restore_name:
        status["restoreInProgress"] = restore_name
    return {"metadata": {"name": "vm"}, "spec": spec, "status": status}


def NS_(message):
    return [("FieldValueNotSupported", "spec", message)]


@pytest.mark.parametrize("old, new, expected", [
    (vm(), vm(volumes=("disk", "data")), []),  # no lock
    (vm(snapshot="s"), vm(volumes=("disk", "data")),
     NS_('Cannot update vm disks or volumes until snapshot "s" completes')),
    (vm(snapshot="s"), vm(run_strategy="Halted"), NS_('Cannot update vm running state until snapshot "s" completes')),
    (vm(snapshot="s", running=True), vm(running=False),
     NS_('Cannot update vm running state until snapshot "s" completes')),
    (vm(snapshot="s", running=True), vm(run_strategy="Always"),  # switching fields is a change, as KubeVirt
     NS_('Cannot update vm running state until snapshot "s" completes')),
    (vm(snapshot="s"), vm(), []),
    (vm(restore_name="r"), vm(run_strategy="Halted"), NS_('Cannot update VM runStrategy until restore "r" completes')),
    (vm(restore_name="r", running=True), vm(run_strategy="Always"), []),  # same effective strategy
    (vm(restore_name="r"), vm(volumes=("other",)), []),  # KubeVirt only guards the run strategy
])
def test_vm_updates_while_a_snapshot_or_restore_holds_it(old, new, expected):
    assert causes_of(compute_vm_lock_causes(new, old)) == expected


def test_lock_refusal_as_the_subresources_see_it():
    cause = StatusCause("spec", 'Cannot update vm running state until snapshot "s" completes')
    assert lock_refusal_message(cause) == ('admission webhook "virtualmachine-validator.kubevirt.io" denied the '
                                           'request: Cannot update vm running state until snapshot "s" completes')
