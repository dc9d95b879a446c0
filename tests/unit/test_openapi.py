"""The OpenAPI documents are what kubectl needs: GVK extensions on every kind, resolvable
references, documented fields (``kubectl explain vm.spec.runStrategy``), PATCH operations that
advertise fieldValidation, and no JSON Schema constructs OpenAPI 2.0/3.0 lack."""

import json

import pytest

from services.virt_api.openapi import definition_name, openapi_v2, openapi_v3, openapi_v3_index
from shared.api.resources import RESOURCES
from shared.errors import NotFound

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
GROUP_VERSIONS = sorted({(r.group, r.version) for r in RESOURCES})


def walk(node, path="$"):
    """Every (path, dict) in a JSON document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def schemas_of(doc):
    return doc["definitions"] if "definitions" in doc else doc["components"]["schemas"]


def resolve(doc, ref):
    prefix = "#/definitions/" if "definitions" in doc else "#/components/schemas/"
    assert ref.startswith(prefix), ref
    return schemas_of(doc)[ref[len(prefix):]]


def documents():
    yield "v2", openapi_v2()
    for group, version in GROUP_VERSIONS:
        yield f"v3:{group or 'core'}/{version}", openapi_v3(group, version)


DOCS = list(documents())


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_every_reference_resolves_and_no_json_schema_only_constructs_remain(label, doc):
    for path, node in walk(doc):
        if "$ref" in node:
            assert resolve(doc, node["$ref"]) is not None, path
        assert "$defs" not in node, path
        assert node.get("type") != "null", path
        if "enum" in node:
            assert "type" in node, path
        for option in node.get("anyOf", []):
            assert option.get("type") != "null", path
        if label == "v2":
            assert "anyOf" not in node and "allOf" not in node, path
    for name, schema in schemas_of(doc).items():
        for path, node in walk(schema, name):
            assert not isinstance(node.get("title"), str) or path.endswith(".properties"), path


@pytest.mark.parametrize("resource", RESOURCES, ids=[r.kind for r in RESOURCES])
def test_every_kind_and_its_list_carry_group_version_kind(resource):
    for doc in (openapi_v2(), openapi_v3(resource.group, resource.version)):
        schemas = schemas_of(doc)
        name = definition_name(resource.type)
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        assert schemas[name]["x-kubernetes-group-version-kind"] == [gvk]
        list_name = name.rsplit(".", 1)[0] + "." + resource.list_kind
        assert schemas[list_name]["x-kubernetes-group-version-kind"] == [{**gvk, "kind": resource.list_kind}]


def test_definition_names_follow_kubernetes():
    names = set(schemas_of(openapi_v2()))
    for name in ("io.kubevirt.v1.VirtualMachine", "io.kubevirt.v1.VirtualMachineInstance",
                 "io.kubevirt.v1.VirtualMachineInstanceMigration", "io.kubevirt.v1.VirtualMachineInstanceReplicaSet",
                 "io.kubevirt.pool.v1beta1.VirtualMachinePool", "io.kubevirt.migrations.v1alpha1.MigrationPolicy",
                 "io.k8s.api.core.v1.Node", "io.k8s.api.coordination.v1.Lease",
                 f"{META}.ObjectMeta", f"{META}.ListMeta", f"{META}.Status", f"{META}.WatchEvent",
                 f"{META}.DeleteOptions", f"{META}.Patch", f"{META}.OwnerReference"):
        assert name in names, name


def explain(doc, kind, field_path):
    """What kubectl explain does: find the schema by GVK, then follow fields through refs."""
    schema = next(s for s in schemas_of(doc).values()
                  if any(g["kind"] == kind for g in s.get("x-kubernetes-group-version-kind", [])))
    for field in field_path.split("."):
        prop = schema["properties"][field]
        description = prop.get("description")
        target = prop.get("$ref") or (prop.get("allOf") or [{}])[0].get("$ref")
        schema = resolve(doc, target) if target else prop
        if description and "description" not in schema:
            schema = {**schema, "description": description}
    return schema


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_explain_vm_spec_run_strategy_answers(version):
    doc = openapi_v2() if version == "v2" else openapi_v3("kubevirt.io", "v1")
    schema = explain(doc, "VirtualMachine", "spec.runStrategy")
    assert schema["type"] == "string"
    for strategy in ("Always", "RerunOnFailure", "Manual", "Halted", "Once"):
        assert strategy in schema["description"]
    assert explain(doc, "VirtualMachine", "spec")["description"]
    assert explain(doc, "VirtualMachineInstance", "spec.domain.memory.guest")["description"]
    assert explain(doc, "VirtualMachineInstance", "metadata.labels")["type"] == "object"


def test_quantities_are_int_or_string_and_loose_objects_keep_fields():
    v3 = openapi_v3("kubevirt.io", "v1")
    guest = explain(v3, "VirtualMachineInstance", "spec.domain.memory.guest")
    assert guest["x-kubernetes-int-or-string"] is True
    affinity = explain(v3, "VirtualMachineInstance", "spec.affinity")
    assert affinity["x-kubernetes-preserve-unknown-fields"] is True
    v2 = openapi_v2()
    assert explain(v2, "VirtualMachineInstance", "spec.domain.memory.guest")["format"] == "int-or-string"
    assert explain(v2, "VirtualMachineInstance", "spec.affinity")["additionalProperties"] == {}


def test_required_fields_and_list_limits_are_published():
    v3 = openapi_v3("kubevirt.io", "v1")
    assert "domain" in explain(v3, "VirtualMachineInstance", "spec")["required"]
    disks = explain(v3, "VirtualMachineInstance", "spec.domain.devices")["properties"]["disks"]
    assert disks["maxItems"] == 256


def patch_operations(doc):
    for path, item in doc["paths"].items():
        if "patch" in item:
            yield path, item["patch"]


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_patch_operations_advertise_field_validation_and_no_strategic_merge(label, doc):
    seen = set()
    for path, op in patch_operations(doc):
        gvk = op["x-kubernetes-group-version-kind"]
        seen.add(gvk["kind"])
        names = [(p["name"], p["in"]) for p in op["parameters"]]
        assert ("fieldValidation", "query") in names, path
        media = op["consumes"] if label == "v2" else list(op["requestBody"]["content"])
        assert "application/strategic-merge-patch+json" not in media
        assert "application/merge-patch+json" in media
    expected = {r.kind for r in RESOURCES if label in ("v2", f"v3:{r.group or 'core'}/{r.version}")}
    assert seen == expected


def test_namespaced_and_cluster_scoped_paths():
    paths = openapi_v2()["paths"]
    assert "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}" in paths
    assert "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/status" in paths
    assert "/apis/kubevirt.io/v1/virtualmachines" in paths
    assert "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies/{name}" in paths
    assert "/api/v1/nodes/{name}" in paths
    assert "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/status" not in paths


def test_v3_index_points_at_every_group_version_with_a_content_hash():
    index = openapi_v3_index()["paths"]
    assert set(index) == {f"apis/{g}/{v}" if g else f"api/{v}" for g, v in GROUP_VERSIONS}
    url = index["apis/kubevirt.io/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/kubevirt.io/v1?hash=")
    assert openapi_v3_index() == openapi_v3_index()


def test_unknown_group_version_is_not_found():
    with pytest.raises(NotFound):
        openapi_v3("kubevirt.io", "v2")


def test_documents_are_fresh_copies_and_json():
    first = openapi_v2()
    first["definitions"].clear()
    assert openapi_v2()["definitions"]
    json.dumps(openapi_v3("kubevirt.io", "v1"))
