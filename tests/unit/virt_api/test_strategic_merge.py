"""Strategic merge patch for the built-in kinds (Kubernetes strategicpatch rules for Node/Lease fields)."""

import pytest

from services.virt_api.patch import apply_patch, check_patch_type
from services.virt_api.strategic_merge import compute_strategic_merge
from shared.errors import BadRequest, UnsupportedMediaType

NODE = {"metadata": {"name": "n", "labels": {"a": "1"}, "finalizers": ["x"],
                     "ownerReferences": [{"uid": "u1", "name": "o1"}]},
        "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}}


@pytest.mark.parametrize(("patch", "expected"), [
    pytest.param({"spec": {"unschedulable": True}},
                 {**NODE, "spec": {**NODE["spec"], "unschedulable": True}}, id="cordon"),
    pytest.param({"spec": {"taints": None}}, {**NODE, "spec": {}}, id="null-deletes"),
    pytest.param({"spec": {"taints": [{"key": "d", "effect": "NoExecute"}]}},
                 {**NODE, "spec": {"taints": [{"key": "d", "effect": "NoExecute"}]}}, id="taints-replace"),
    pytest.param({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PIDPressure"}],
                             "$setElementOrder/conditions": [{"type": "Ready"}]}},
                 {**NODE, "status": {"conditions": [{"type": "Ready", "status": "False"},
                                                    {"type": "DiskPressure", "status": "False"},
                                                    {"type": "PIDPressure"}]}}, id="conditions-merge-by-type"),
    pytest.param({"status": {"conditions": [{"type": "DiskPressure", "$patch": "delete"}]}},
                 {**NODE, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, id="delete-item"),
    pytest.param({"metadata": {"finalizers": ["y", "x"]}},
                 {**NODE, "metadata": {**NODE["metadata"], "finalizers": ["x", "y"]}}, id="finalizers-set"),
    pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
                 {**NODE, "metadata": {**NODE["metadata"], "finalizers": []}}, id="delete-from-primitive"),
    pytest.param({"metadata": {"ownerReferences": [{"uid": "u2", "name": "o2"}]}},
                 {**NODE, "metadata": {**NODE["metadata"], "ownerReferences": [
                     {"uid": "u1", "name": "o1"}, {"uid": "u2", "name": "o2"}]}}, id="owner-refs-by-uid"),
    pytest.param({"spec": {"$patch": "replace", "unschedulable": True}},
                 {**NODE, "spec": {"unschedulable": True}}, id="replace-directive"),
    pytest.param({"metadata": {"labels": {"a": None, "b": "2"}}},
                 {**NODE, "metadata": {**NODE["metadata"], "labels": {"b": "2"}}}, id="labels-merge"),
])
def test_strategic_merge(patch, expected):
    before = repr(NODE)
    assert compute_strategic_merge(NODE, patch) == expected
    assert repr(NODE) == before


@pytest.mark.parametrize("patch", [
    {"spec": {"$patch": "frobnicate"}},
    {"status": {"conditions": [{"status": "True"}]}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}},
])
def test_malformed_strategic_patches(patch):
    with pytest.raises(BadRequest):
        compute_strategic_merge(NODE, patch)


def test_strategic_merge_only_for_builtin_groups():
    smp = "application/strategic-merge-patch+json"
    assert check_patch_type(smp, "") == smp
    assert check_patch_type(smp, "coordination.k8s.io") == smp
    for group in (None, "kubevirt.io", "migrations.kubevirt.io"):
        with pytest.raises(UnsupportedMediaType):
            check_patch_type(smp, group)
    assert apply_patch(NODE, b'{"spec": {"unschedulable": true}}', smp, "")["spec"]["unschedulable"] is True
