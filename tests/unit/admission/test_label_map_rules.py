"""Label maps inside a spec (a VMIM's ``spec.addedNodeSelector``) validated as Kubernetes
validates labels (IsQualifiedName, IsValidLabelValue): table tests of the pure checks, and the
VMIM create answering 422 with the field path ``spec.addedNodeSelector``."""

import pytest

from shared.admission import admit
from shared.admission.labels import (
    LABEL_VALUE_FORMAT,
    MAX_CAUSES,
    NAME_PART_FORMAT,
    QUALIFIED_NAME_FORMAT,
    SUBDOMAIN_FORMAT,
    compute_label_map_causes,
    compute_label_value_errors,
    compute_qualified_name_errors,
)
from shared.api.resources import VIRTUAL_MACHINE_INSTANCE_MIGRATION
from shared.errors import Invalid


@pytest.mark.parametrize(("key", "errors"), [
    ("zone", []),
    ("kubernetes.io/hostname", []),
    ("topology.kubernetes.io/zone", []),
    ("A_b.c-9", []),
    ("x" * 63, []),
    ("bad key!!", [NAME_PART_FORMAT]),
    ("", ["name part must be non-empty"]),
    ("-zone", [NAME_PART_FORMAT]),
    ("x" * 64, ["name part must be no more than 63 characters"]),
    ("/zone", ["prefix part must be non-empty"]),
    ("Example.COM/zone", [f"prefix part {SUBDOMAIN_FORMAT}"]),
    ("a" * 254 + "/zone", ["prefix part must be no more than 253 characters"]),
    ("a/b/c", [QUALIFIED_NAME_FORMAT]),
    ("example.com/", ["name part must be non-empty"]),
])
def test_qualified_names(key, errors):
    assert compute_qualified_name_errors(key) == errors


@pytest.mark.parametrize(("value", "errors"), [
    ("", []), ("b", []), ("node-2", []), ("My_value.1", []), ("v" * 63, []),
    ("v" * 64, ["must be no more than 63 characters"]),
    ("has space", [LABEL_VALUE_FORMAT]),
    ("-x", [LABEL_VALUE_FORMAT]),
    ("v" * 2_000_000, ["must be no more than 63 characters"]),
])
def test_label_values(value, errors):
    assert compute_label_value_errors(value) == errors


def test_map_causes_quote_the_offender_cut_short_and_are_bounded():
    assert compute_label_map_causes("spec.addedNodeSelector", None) == []
    assert compute_label_map_causes("spec.addedNodeSelector", {"zone": "b"}) == []
    [cause] = compute_label_map_causes("spec.addedNodeSelector", {"bad key!!": "b"})
    assert (cause.field, cause.reason) == ("spec.addedNodeSelector", "FieldValueInvalid")
    assert cause.message == f'Invalid value: "bad key!!": {NAME_PART_FORMAT}'
    [cause] = compute_label_map_causes("spec.addedNodeSelector", {"zone": "v" * 2_000_000})
    assert cause.message == f'Invalid value: "{"v" * 80}...": must be no more than 63 characters'
    many = {f"bad key {i}": "b" for i in range(1000)}
    assert len(compute_label_map_causes("spec.addedNodeSelector", many)) == MAX_CAUSES
    [cause] = compute_label_map_causes("spec.addedNodeSelector", {"zone": 3})
    assert cause.message == "must be a map of strings to strings"


@pytest.mark.parametrize("selector", [
    {"bad key!!": "x"},
    {"zone": "v" * (2 * 1024 * 1024)},
    {"zone": "b", "example.com/": "c"},
])
def test_vmim_create_with_an_invalid_added_node_selector_is_422(selector):
    body = {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"vmiName": "guest", "addedNodeSelector": selector}}
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, body, operation="CREATE")
    assert info.value.code == 422
    assert info.value.causes and {c.field for c in info.value.causes} == {"spec.addedNodeSelector"}
    assert len(info.value.to_status()["message"]) < 4096


def test_vmim_create_with_a_valid_added_node_selector_is_admitted():
    body = {"metadata": {"name": "m", "namespace": "ns"},
            "spec": {"vmiName": "guest", "addedNodeSelector": {"kubernetes.io/hostname": "node-2", "zone": ""}}}
    assert admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, body, operation="CREATE").obj["spec"]["addedNodeSelector"] == {
        "kubernetes.io/hostname": "node-2", "zone": ""}
