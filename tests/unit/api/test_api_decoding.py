"""Decoding finds unknown fields with their paths, checks types and keeps user values."""

import msgspec
import pytest

from shared.api.decoding import FieldErrors, decode_object, find_unknown_fields
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance


def make_vm(**spec_extra):
    spec = {
        "runStrategy": "Halted",
        "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "128Mi"}}}},
    }
    spec.update(spec_extra)
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "v"}, "spec": spec}


def test_unknown_fields_are_reported_with_paths_and_removed():
    body = make_vm(foo=1)
    body["spec"]["template"]["spec"]["bar"] = {"x": 1}
    body["spec"]["template"]["spec"]["domain"]["devices"]["disks"] = [{"name": "d", "weird": True}]
    body["metadata"]["colour"] = "blue"
    decoded = decode_object(body, VirtualMachine)
    assert decoded.unknown_fields == [
        "metadata.colour",
        "spec.template.spec.domain.devices.disks[0].weird",
        "spec.template.spec.bar",
        "spec.foo",
    ]
    assert "foo" not in decoded.obj["spec"]
    assert decoded.obj["spec"]["template"]["spec"]["domain"]["devices"]["disks"] == [{"name": "d"}]
    assert "colour" not in decoded.obj["metadata"]


def test_labels_and_annotations_keep_arbitrary_keys():
    body = make_vm()
    body["metadata"]["labels"] = {"app.example.com/tier": "db", "x": ""}
    body["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    decoded = decode_object(body, VirtualMachine)
    assert decoded.unknown_fields == []
    assert decoded.obj["metadata"] == body["metadata"]


def test_user_given_false_zero_and_empty_values_survive():
    body = make_vm()
    tmpl = body["spec"]["template"]["spec"]
    tmpl["terminationGracePeriodSeconds"] = 0
    tmpl["domain"]["resources"] = {}
    tmpl["domain"]["devices"] = {"autoattachSerialConsole": False, "disks": [], "rng": {}}
    decoded = decode_object(body, VirtualMachine)
    assert decoded.obj == body


def test_nulls_are_dropped_like_go_decodes_them():
    body = make_vm()
    body["metadata"]["creationTimestamp"] = None
    body["status"] = None
    decoded = decode_object(body, VirtualMachine)
    assert "creationTimestamp" not in decoded.obj["metadata"]
    assert "status" not in decoded.obj


def test_numeric_quantities_become_strings():
    body = make_vm()
    body["spec"]["template"]["spec"]["domain"]["resources"] = {"requests": {"cpu": 2, "memory": 0.5}}
    decoded = decode_object(body, VirtualMachine)
    assert decoded.obj["spec"]["template"]["spec"]["domain"]["resources"] == {
        "requests": {"cpu": "2", "memory": "500m"}
    }


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        pytest.param(lambda b: b["spec"].update(running="yes"), "spec.running", "FieldValueTypeInvalid", id="type"),
        pytest.param(lambda b: b["spec"].pop("template"), "spec.template", "FieldValueRequired", id="required"),
        pytest.param(
            lambda b: b["spec"]["template"]["spec"]["domain"]["devices"].update(disks=[{"disk": {}}]),
            "spec.template.spec.domain.devices.disks[0].name",
            "FieldValueRequired",
            id="nested-required",
        ),
        pytest.param(
            lambda b: b["metadata"].update(labels={"a": 1}), "metadata.labels", "FieldValueTypeInvalid", id="label"
        ),
        pytest.param(
            lambda b: b["spec"]["template"]["spec"].update(volumes=[{"name": "v"}] * 257),
            "spec.template.spec.volumes",
            "FieldValueTypeInvalid",
            id="max-items",
        ),
    ],
)
def test_type_errors_name_the_field(mutate, field, reason):
    body = make_vm()
    mutate(body)
    with pytest.raises(FieldErrors) as info:
        decode_object(body, VirtualMachine)
    (cause,) = info.value.causes
    assert cause.field == field
    assert cause.reason == reason


def test_acronym_fields_keep_kubernetes_names():
    body = {
        "spec": {"domain": {"devices": {"autoattachVSOCK": True}}},
        "status": {"interfaces": [{"ipAddress": "10.0.0.2", "ipAddresses": ["10.0.0.2"]}], "VSOCKCID": 3,
                   "guestOSInfo": {"id": "fedora"}, "currentCPUTopology": {"sockets": 1}},
    }
    decoded = decode_object(body, VirtualMachineInstance)
    assert decoded.unknown_fields == []
    assert decoded.obj == body
    assert decoded.struct.status.vsockcid == 3


def test_find_unknown_fields_without_decoding():
    assert find_unknown_fields({"spec": {"domain": {}, "nope": 1}}, VirtualMachineInstance) == ["spec.nope"]
    assert msgspec.convert({"spec": {"domain": {}}}, VirtualMachineInstance).spec.domain is not None


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        pytest.param(lambda s: s["template"]["spec"]["domain"].update(cpu={"cores": 99999999999999999999999}),
                     "spec.template.spec.domain.cpu.cores", "must be less than or equal to 4294967295",
                     id="uint32-huge"),
        pytest.param(lambda s: s["template"]["spec"]["domain"].update(cpu={"sockets": 4294967296}),
                     "spec.template.spec.domain.cpu.sockets", "must be less than or equal to 4294967295",
                     id="uint32-just-over"),
        pytest.param(lambda s: s["template"]["spec"]["domain"].update(cpu={"threads": -1}),
                     "spec.template.spec.domain.cpu.threads", "must be greater than or equal to 0",
                     id="uint32-negative"),
        pytest.param(lambda s: s["template"]["spec"].update(terminationGracePeriodSeconds=2**63),
                     "spec.template.spec.terminationGracePeriodSeconds",
                     "must be less than or equal to 9223372036854775807", id="int64"),
        pytest.param(lambda s: s["template"]["spec"].update(readinessProbe={"periodSeconds": 2**31}),
                     "spec.template.spec.readinessProbe.periodSeconds", "must be less than or equal to 2147483647",
                     id="int32"),
    ],
)
def test_integers_outside_their_go_type_are_refused_with_the_bound(mutate, field, message):
    body = make_vm()
    mutate(body["spec"])
    with pytest.raises(FieldErrors) as info:
        decode_object(body, VirtualMachine)
    (cause,) = info.value.causes
    assert (cause.field, cause.message, cause.reason) == (field, f"Invalid value: {message}", "FieldValueInvalid")


def test_integers_at_the_edge_of_their_go_type_are_kept():
    body = make_vm()
    body["spec"]["template"]["spec"]["domain"]["cpu"] = {"cores": 4294967295, "threads": 0}
    decoded = decode_object(body, VirtualMachine)
    assert decoded.obj["spec"]["template"]["spec"]["domain"]["cpu"] == {"cores": 4294967295, "threads": 0}
