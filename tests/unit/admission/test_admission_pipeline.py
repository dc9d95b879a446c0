"""The admission pipeline: body parsing, shape checks, fieldValidation modes, VM/VMIM/VMIRS/
pool/MigrationPolicy rules, UPDATE restrictions."""

import copy

import pytest
from admission_builders import make_vm, make_vmi, with_disk

from services.virt_api.request_body import parse_body
from shared.admission import admit
from shared.api.resources import (
    LEASE,
    MIGRATION_POLICY,
    NODE,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_INSTANCE,
    VIRTUAL_MACHINE_INSTANCE_MIGRATION,
    VIRTUAL_MACHINE_INSTANCE_REPLICA_SET,
    VIRTUAL_MACHINE_POOL,
)
from shared.errors import BadRequest, Invalid, UnsupportedMediaType

# ---- parse_body -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        pytest.param(b'{"kind": "VirtualMachine"}', "application/json", {"kind": "VirtualMachine"}, id="json"),
        pytest.param(b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}, id="json-charset"),
        pytest.param(b"kind: VirtualMachine\n", "application/yaml", {"kind": "VirtualMachine"}, id="yaml"),
        pytest.param(b"---\nkind: X\n", "application/yaml", {"kind": "X"}, id="yaml-leading-separator"),
        pytest.param(b"metadata:\n  creationTimestamp: 2026-01-01T00:00:00Z\n", "application/yaml",
                     {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}, id="yaml-timestamp-stays-string"),
        pytest.param(b"labels:\n  1: one\n", "application/yaml", {"labels": {"1": "one"}}, id="yaml-int-key"),
        pytest.param(b'{"a": 1}', "", {"a": 1}, id="no-content-type-is-json"),
    ],
)
def test_parse_body_accepts_one_object(raw, content_type, expected):
    assert parse_body(raw, content_type) == expected


@pytest.mark.parametrize(
    ("raw", "content_type", "error"),
    [
        pytest.param(b"", "application/json", BadRequest, id="empty"),
        pytest.param(b"{nope", "application/json", BadRequest, id="bad-json"),
        pytest.param(b"[1, 2]", "application/json", BadRequest, id="json-list"),
        pytest.param(b'"text"', "application/json", BadRequest, id="json-string"),
        pytest.param(b"metadata: [a, b", "application/yaml", BadRequest, id="bad-yaml"),
        pytest.param(b"- a\n- b\n", "application/yaml", BadRequest, id="yaml-list"),
        pytest.param(b"a: 1\n---\nb: 2\n", "application/yaml", BadRequest, id="two-documents"),
        pytest.param(b"\x0a\x0b", "application/vnd.kubernetes.protobuf", UnsupportedMediaType, id="protobuf"),
    ],
)
def test_parse_body_refuses_what_is_not_one_object(raw, content_type, error):
    with pytest.raises(error) as info:
        parse_body(raw, content_type)
    assert info.value.code in (400, 415)


# ---- shape and fieldValidation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(["not", "an", "object"], "must be a VirtualMachine object", id="list"),
        pytest.param({"apiVersion": "kubevirt.io/v1alpha3", "kind": "VirtualMachine"}, "API version", id="version"),
        pytest.param({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance"}, "kind", id="kind"),
    ],
)
def test_body_that_is_not_this_kind_is_bad_request(body, message):
    with pytest.raises(BadRequest) as info:
        admit(VIRTUAL_MACHINE, body, operation="CREATE")
    assert message in info.value.message


def test_missing_api_version_and_kind_are_filled():
    vm = make_vm()
    del vm["apiVersion"], vm["kind"]
    obj = admit(VIRTUAL_MACHINE, vm, operation="CREATE").obj
    assert (obj["apiVersion"], obj["kind"]) == ("kubevirt.io/v1", "VirtualMachine")


def vm_with_unknown_fields():
    vm = make_vm()
    vm["spec"]["foo"] = 1
    vm["spec"]["template"]["spec"]["bar"] = True
    vm["metadata"]["colour"] = "blue"
    return vm


def test_strict_rejects_every_unknown_field_with_its_path():
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, vm_with_unknown_fields(), operation="CREATE", field_validation="Strict")
    assert [c.field for c in info.value.causes] == ["metadata.colour", "spec.template.spec.bar", "spec.foo"]
    assert 'unknown field "spec.foo"' in info.value.message
    assert info.value.code == 422


def test_warn_drops_unknown_fields_with_one_warning_each():
    result = admit(VIRTUAL_MACHINE, vm_with_unknown_fields(), operation="CREATE")
    assert result.warnings == [
        'unknown field "metadata.colour"',
        'unknown field "spec.template.spec.bar"',
        'unknown field "spec.foo"',
    ]
    assert "foo" not in result.obj["spec"] and "colour" not in result.obj["metadata"]
    assert "bar" not in result.obj["spec"]["template"]["spec"]


def test_ignore_drops_unknown_fields_silently():
    result = admit(VIRTUAL_MACHINE, vm_with_unknown_fields(), operation="CREATE", field_validation="Ignore")
    assert result.warnings == []
    assert "foo" not in result.obj["spec"]


def test_unknown_field_validation_value_is_bad_request():
    with pytest.raises(BadRequest):
        admit(VIRTUAL_MACHINE, make_vm(), operation="CREATE", field_validation="Loose")


def test_type_error_is_invalid_with_path():
    vm = make_vm()
    vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "soon"
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.template.spec.terminationGracePeriodSeconds"]


def test_input_body_is_never_changed():
    vm = vm_with_unknown_fields()
    before = copy.deepcopy(vm)
    admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert vm == before


def test_metadata_passes_through():
    vm = make_vm()
    vm["metadata"].update(labels={"a.example/b": "c"}, annotations={"note": "x"}, finalizers=["f"],
                          ownerReferences=[{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u"}])
    assert admit(VIRTUAL_MACHINE, vm, operation="CREATE").obj["metadata"] == vm["metadata"]


# ---- VM -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "strategy", "field"),
    [
        pytest.param(True, "Always", "spec.running", id="both"),
        pytest.param(None, None, "spec.runStrategy", id="neither"),
        pytest.param(None, "Sometimes", "spec.runStrategy", id="unknown"),
        pytest.param(None, "WaitAsReceiver", "spec.runStrategy", id="receiver-without-gate"),
    ],
)
def test_run_strategy_rules(running, strategy, field):
    vm = make_vm(run_strategy=strategy)
    if running is not None:
        vm["spec"]["running"] = running
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert [c.field for c in info.value.causes] == [field]


def test_running_alone_is_accepted_with_a_deprecation_warning():
    vm = make_vm(run_strategy=None)
    vm["spec"]["running"] = False
    result = admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert result.warnings == ["spec.running is deprecated, please use spec.runStrategy instead."]
    assert result.obj["spec"]["running"] is False


def test_vm_template_rules_use_the_template_path():
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, make_vm(with_disk({"name": "ghost"})), operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.template.spec.domain.devices.disks[1].name"]


def test_vm_without_template_spec_is_invalid():
    vm = make_vm()
    del vm["spec"]["template"]["spec"]
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.template.spec"]


def data_volume_template(name="dv", **spec):
    return {"metadata": {"name": name}, "spec": spec or {"storage": {}, "source": {"blank": {}}}}


@pytest.mark.parametrize(
    ("dvt", "field"),
    [
        pytest.param(data_volume_template("unused"), "spec.dataVolumeTemplates[0].metadata.name", id="unreferenced"),
        pytest.param(data_volume_template(pvc={}, storage={}, source={"blank": {}}), "spec.dataVolumeTemplates[0].spec",
                     id="pvc-and-storage"),
        pytest.param(data_volume_template(storage={}), "spec.dataVolumeTemplates[0].spec", id="no-source"),
        pytest.param({"spec": {"storage": {}, "source": {"blank": {}}}}, "spec.dataVolumeTemplates[0].metadata.name",
                     id="no-name"),
    ],
)
def test_data_volume_template_rules(dvt, field):
    vm = make_vm()
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"].append({"name": "dv", "disk": {}})
    vm["spec"]["template"]["spec"]["volumes"].append({"name": "dv", "dataVolume": {"name": "dv"}})
    vm["spec"]["dataVolumeTemplates"] = [dvt]
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE, vm, operation="CREATE")
    assert field in [c.field for c in info.value.causes]
    vm["spec"]["dataVolumeTemplates"] = [data_volume_template()]
    admit(VIRTUAL_MACHINE, vm, operation="CREATE")


# ---- VMI update ----------------------------------------------------------------------------


def stored_vmi():
    return admit(VIRTUAL_MACHINE_INSTANCE, make_vmi(), operation="CREATE").obj


def test_vmi_spec_change_by_user_is_forbidden():
    old = stored_vmi()
    new = copy.deepcopy(old)
    new["spec"]["terminationGracePeriodSeconds"] = 5
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE, new, operation="UPDATE", old=old)
    assert [(c.field, c.reason) for c in info.value.causes] == [("spec", "FieldValueForbidden")]
    assert admit(VIRTUAL_MACHINE_INSTANCE, new, operation="UPDATE", old=old, trusted=True).obj["spec"][
        "terminationGracePeriodSeconds"] == 5


def test_vmi_label_and_status_updates_are_allowed():
    old = stored_vmi()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    new["status"]["phase"] = "Running"
    obj = admit(VIRTUAL_MACHINE_INSTANCE, new, operation="UPDATE", old=old).obj
    assert obj["status"]["phase"] == "Running"
    assert obj["spec"] == old["spec"]


# ---- VMIM, MigrationPolicy, VMIRS, pool, Node, Lease --------------------------------------


def test_migration_gets_vmi_name_label_and_priority_is_kubevirts():
    vmim = {"metadata": {"name": "m"}, "spec": {"vmiName": "guest"}}
    obj = admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, vmim, operation="CREATE").obj
    assert obj["metadata"]["labels"] == {"kubevirt.io/vmi-name": "guest"}
    vmim["spec"]["priority"] = "user-triggered"
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, vmim, operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.migrationPriority"]  # KubeVirt names the field so
    admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, vmim, operation="CREATE", trusted=True)


def test_migration_vmi_name_cannot_change():
    old = admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, {"spec": {"vmiName": "a"}}, operation="CREATE").obj
    new = copy.deepcopy(old)
    new["spec"]["vmiName"] = "b"
    with pytest.raises(Invalid):
        admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, new, operation="UPDATE", old=old)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"bandwidthPerMigration": "fast"}, "spec.bandwidthPerMigration", id="bandwidth-syntax"),
        pytest.param({"bandwidthPerMigration": "-1Mi"}, "spec.bandwidthPerMigration", id="bandwidth-negative"),
        pytest.param({"completionTimeoutPerGiB": -1}, "spec.completionTimeoutPerGiB", id="timeout"),
        pytest.param({"maxDowntimeMs": 0}, "spec.maxDowntimeMs", id="downtime"),
    ],
)
def test_migration_policy_rules(spec, field):
    policy = {"metadata": {"name": "p"}, "spec": {"selectors": {}, **spec}}
    with pytest.raises(Invalid) as info:
        admit(MIGRATION_POLICY, policy, operation="CREATE")
    assert [c.field for c in info.value.causes] == [field]
    assert info.value.group == "migrations.kubevirt.io"


def replica_set(selector, labels):
    return {"metadata": {"name": "rs"}, "spec": {"replicas": 2, "selector": selector,
                                                 "template": {"metadata": {"labels": labels},
                                                              "spec": make_vm()["spec"]["template"]["spec"]}}}


@pytest.mark.parametrize(
    ("selector", "labels", "field"),
    [
        pytest.param({"matchLabels": {"app": "a"}}, {"app": "b"}, "spec.selector", id="mismatch"),
        pytest.param({}, {"app": "a"}, "spec.selector", id="empty"),
        pytest.param({"matchExpressions": [{"key": "app", "operator": "Near"}]}, {"app": "a"},
                     "spec.selector.matchExpressions[0].operator", id="operator"),
    ],
)
def test_replica_set_selector_must_match_template(selector, labels, field):
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE_REPLICA_SET, replica_set(selector, labels), operation="CREATE")
    assert [c.field for c in info.value.causes] == [field]


def test_replica_set_template_rules_use_the_template_path():
    rs = replica_set({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}, {"app": "a"})
    admit(VIRTUAL_MACHINE_INSTANCE_REPLICA_SET, rs, operation="CREATE")
    rs["spec"]["template"]["spec"]["hostname"] = "Bad_Host"
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE_REPLICA_SET, rs, operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.template.spec.hostname"]


def test_pool_runs_vm_rules_under_its_template_path():
    vm = make_vm(run_strategy=None)
    pool = {"metadata": {"name": "p"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "vm"}},
                                               "virtualMachineTemplate": {"metadata": {"labels": {"app": "vm"}},
                                                                          "spec": vm["spec"]}}}
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_POOL, pool, operation="CREATE")
    assert [c.field for c in info.value.causes] == ["spec.virtualMachineTemplate.spec.runStrategy"]
    assert info.value.group == "pool.kubevirt.io"


def test_nodes_and_leases_are_only_decoded():
    node = {"metadata": {"name": "n1", "labels": {"kubevirt.io/schedulable": "true"}},
            "status": {"capacity": {"cpu": "2"}, "anything": [1]}}
    assert admit(NODE, node, operation="CREATE").obj == {"apiVersion": "v1", "kind": "Node", **node}
    lease = {"metadata": {"name": "virt-controller"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    assert admit(LEASE, lease, operation="CREATE").obj["spec"] == lease["spec"]


def test_reapplying_the_same_vmi_manifest_is_not_a_spec_change():
    manifest = make_vmi()
    old = admit(VIRTUAL_MACHINE_INSTANCE, manifest, operation="CREATE").obj
    # kubectl apply's merge patch replaces lists wholesale: the volumes lose imagePullPolicy
    patched = copy.deepcopy(old)
    patched["spec"]["volumes"] = copy.deepcopy(manifest["spec"]["volumes"])
    patched["spec"]["domain"]["devices"]["disks"] = copy.deepcopy(manifest["spec"]["domain"]["devices"]["disks"])
    result = admit(VIRTUAL_MACHINE_INSTANCE, patched, operation="UPDATE", old=old)
    assert result.obj["spec"] == old["spec"]
    patched["spec"]["volumes"][0]["containerDisk"]["image"] = "example.org/other:2"
    with pytest.raises(Invalid):
        admit(VIRTUAL_MACHINE_INSTANCE, patched, operation="UPDATE", old=old)
