"""Pure pieces of virt-api's HTTP layer: merge/JSON patch, media types, Accept, Warning headers,
ObjectMeta rules, URL parsing and discovery documents."""

from __future__ import annotations

import msgspec
import pytest

from services.virt_api.discovery import compute_api_group_list, compute_api_resource_list
from services.virt_api.negotiation import decode_object, format_warning, parse_accept
from services.virt_api.object_meta import compute_validation_causes
from services.virt_api.patch import apply_patch, compute_merge_patch
from services.virt_api.routing import parse_resource_path
from shared.api.resources import RESOURCES
from shared.errors import BadRequest, Invalid, NotFound, UnsupportedMediaType

VM = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "a", "labels": {"x": "1"}},
      "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}}


@pytest.mark.parametrize(
    "target,patch,expected",
    [
        pytest.param({"a": 1}, {"a": 2}, {"a": 2}, id="replace-scalar"),
        pytest.param({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}, {"a": {"c": 2}}, id="null-removes"),
        pytest.param({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, id="lists-replace"),
        pytest.param({"a": 1}, {"b": {"c": None}}, {"a": 1, "b": {}}, id="new-object-without-nulls"),
        pytest.param({"a": {"b": 1}}, {"a": "x"}, {"a": "x"}, id="object-replaced-by-scalar"),
    ],
)
def test_merge_patch_follows_rfc_7386(target, patch, expected):
    before = repr(target)
    assert compute_merge_patch(target, patch) == expected
    assert repr(target) == before


def test_json_patch_applies_operations_and_keeps_the_original():
    out = apply_patch(VM, b'[{"op":"replace","path":"/spec/runStrategy","value":"Always"}]',
                      "application/json-patch+json")
    assert out["spec"]["runStrategy"] == "Always"
    assert VM["spec"]["runStrategy"] == "Halted"


@pytest.mark.parametrize(
    "body,content_type,error",
    [
        pytest.param(b"{}", "application/strategic-merge-patch+json", UnsupportedMediaType, id="strategic-415"),
        pytest.param(b"{}", "application/apply-patch+yaml", UnsupportedMediaType, id="apply-415"),
        pytest.param(b"{nope", "application/merge-patch+json", BadRequest, id="bad-json-400"),
        pytest.param(b'{"op":"add"}', "application/json-patch+json", BadRequest, id="json-patch-not-a-list-400"),
        pytest.param(b'[{"op":"remove","path":"/spec/nothing"}]', "application/json-patch+json", Invalid,
                     id="missing-path-422"),
        pytest.param(b'[{"op":"test","path":"/spec/runStrategy","value":"Always"}]', "application/json-patch+json",
                     Invalid, id="failed-test-422"),
        pytest.param(b'[{"op":"frobnicate","path":"/a"}]', "application/json-patch+json", BadRequest,
                     id="unknown-op-400"),
        pytest.param(b'[{"op":"remove","path":"spec"}]', "application/json-patch+json", BadRequest,
                     id="pointer-without-slash-400"),
        pytest.param(b'"x"', "application/merge-patch+json", BadRequest, id="result-not-an-object-400"),
        pytest.param(b'{"a": "\\udc00"}', "application/merge-patch+json", BadRequest, id="lone-surrogate-400"),
    ],
)
def test_bad_patches_get_the_kubernetes_error(body, content_type, error):
    with pytest.raises(error):
        apply_patch(VM, body, content_type)


@pytest.mark.parametrize(
    "ops,message",
    [
        pytest.param([{"op": "replace", "path": "/spec/nope/x", "value": 1}],
                     "replace operation does not apply: doc is missing path: /spec/nope/x", id="missing-parent"),
        pytest.param([{"op": "remove", "path": "/spec/nothing"}],
                     "remove operation does not apply: doc is missing path: /spec/nothing", id="missing-member"),
        pytest.param([{"op": "add", "path": "/spec/runStrategy/x", "value": 1}],
                     "add operation does not apply: doc is missing path: /spec/runStrategy/x", id="into-a-string"),
        pytest.param([{"op": "test", "path": "/spec/runStrategy", "value": "Always"}],
                     "testing value /spec/runStrategy failed", id="failed-test"),
        pytest.param([{"op": "move", "from": "/spec/gone", "path": "/spec/here"}],
                     "move operation does not apply: doc is missing from path: /spec/gone", id="move-missing-from"),
        pytest.param([{"op": "replace", "path": "/metadata/labels/x", "value": "2"},
                      {"op": "remove", "path": "/spec/template/spec/volumes/0"}],
                     "remove operation does not apply: doc is missing path: /spec/template/spec/volumes/0",
                     id="second-op-fails"),
    ],
)
def test_json_patch_errors_name_the_operation_not_the_object(ops, message):
    with pytest.raises(Invalid) as caught:
        apply_patch(VM, msgspec.json.encode(ops), "application/json-patch+json")
    assert caught.value.message == f"the JSON patch could not be applied: {message}"
    assert VM["metadata"]["labels"] == {"x": "1"}


@pytest.mark.parametrize(
    "raw,content_type,expected",
    [
        pytest.param(b'{"a": 1}', "application/json", {"a": 1}, id="json"),
        pytest.param(b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}, id="json-with-charset"),
        pytest.param(b"a: 1\n", "application/yaml", {"a": 1}, id="yaml"),
        pytest.param(b'{"a": 1}', None, {"a": 1}, id="no-content-type-is-json"),
    ],
)
def test_bodies_decode_by_content_type(raw, content_type, expected):
    assert decode_object(raw, content_type) == expected


@pytest.mark.parametrize(
    "raw,content_type,error",
    [
        pytest.param(b"metadata: [a, b", "application/yaml", BadRequest, id="broken-yaml"),
        pytest.param(b"[1, 2]", "application/json", BadRequest, id="array-not-object"),
        pytest.param(b"", "application/json", BadRequest, id="empty"),
        pytest.param(b"\x00", "application/vnd.kubernetes.protobuf", UnsupportedMediaType, id="protobuf-415"),
        pytest.param(b'{"a": "\\ud800"}', "application/json", BadRequest, id="json-lone-surrogate"),
        pytest.param(b'a: "\\ud800"', "application/yaml", BadRequest, id="yaml-lone-surrogate"),
    ],
)
def test_undecodable_bodies_are_refused(raw, content_type, error):
    with pytest.raises(error):
        decode_object(raw, content_type)


@pytest.mark.parametrize(
    "header,table,yaml_",
    [
        pytest.param("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                     "g=meta.k8s.io,application/json", True, False, id="kubectl-get"),
        pytest.param("application/json", False, False, id="json"),
        pytest.param("application/yaml", False, True, id="yaml"),
        pytest.param("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
                     False, False, id="metadata-only-falls-back-to-json"),
        pytest.param(None, False, False, id="none"),
    ],
)
def test_accept_header_picks_table_yaml_or_json(header, table, yaml_):
    accept = parse_accept(header)
    assert (accept.table, accept.yaml) == (table, yaml_)


def test_warning_header_is_code_299_with_escaped_quotes():
    assert format_warning('unknown field "spec.foo"') == '299 - "unknown field \\"spec.foo\\""'


def test_warning_header_never_carries_control_characters():
    value = format_warning('unknown field "a\x00b\r\nX-Injected: 1\u00e9"')
    assert value == '299 - "unknown field \\"a\\u0000b X-Injected: 1\\u00e9\\""'
    assert all(" " <= ch <= "~" for ch in value)


@pytest.mark.parametrize(
    "metadata,fields",
    [
        pytest.param({"name": "ok-name.x"}, [], id="valid"),
        pytest.param({"generateName": "vm-"}, [], id="generate-name"),
        pytest.param({}, ["metadata.name"], id="no-name"),
        pytest.param({"name": "Upper"}, ["metadata.name"], id="uppercase-name"),
        pytest.param({"name": "a" * 254}, ["metadata.name"], id="name-too-long"),
        pytest.param({"name": "a", "labels": {"k": "v" * 64}}, ["metadata.labels"], id="label-value-too-long"),
        pytest.param({"name": "a", "labels": {"bad key!": "v"}}, ["metadata.labels"], id="label-key"),
        pytest.param({"name": "a", "labels": {"k": 1}}, ["metadata.labels"], id="label-not-string"),
        pytest.param({"name": "a", "annotations": {"k": 1}}, ["metadata.annotations"], id="annotation-not-string"),
        pytest.param({"name": "a", "finalizers": "x"}, ["metadata.finalizers"], id="finalizers-not-list"),
        pytest.param({"name": "a", "ownerReferences": [{"kind": "VirtualMachine"}]},
                     ["metadata.ownerReferences[0].apiVersion", "metadata.ownerReferences[0].name",
                      "metadata.ownerReferences[0].uid"], id="owner-reference-incomplete"),
        pytest.param({"name": "a", "namespace": "Bad_NS"}, ["metadata.namespace"], id="namespace"),
    ],
)
def test_object_meta_rules_name_the_field(metadata, fields):
    assert [c.field for c in compute_validation_causes(metadata, namespaced=True)] == fields


@pytest.mark.parametrize(
    "prefix,tail,expected",
    [
        pytest.param("apis", "kubevirt.io/v1/namespaces/ns/virtualmachines/vm/status",
                     ("kubevirt.io", "v1", "ns", "virtualmachines", "vm", "status"), id="namespaced-status"),
        pytest.param("apis", "kubevirt.io/v1/virtualmachines", ("kubevirt.io", "v1", None, "virtualmachines",
                                                                None, None), id="all-namespaces"),
        pytest.param("api", "v1/nodes/n1", ("", "v1", None, "nodes", "n1", None), id="core-node"),
        pytest.param("apis", "kubevirt.io/v1/namespaces/ns/virtualmachines",
                     ("kubevirt.io", "v1", "ns", "virtualmachines", None, None), id="namespaced-collection"),
    ],
)
def test_resource_urls_split_into_their_parts(prefix, tail, expected):
    p = parse_resource_path(prefix, tail)
    assert (p.group, p.version, p.namespace, p.plural, p.name, p.subresource) == expected


@pytest.mark.parametrize("tail", [
    pytest.param("kubevirt.io/v1/namespaces/ns/virtualmachines/vm/status/extra", id="too-deep"),
    pytest.param("kubevirt.io/v1//x", id="empty-segment"),
])
def test_malformed_resource_urls_are_not_found(tail):
    with pytest.raises(NotFound):
        parse_resource_path("apis", tail)


def test_discovery_lists_kubevirt_short_names_and_status_subresources():
    doc = compute_api_resource_list("kubevirt.io", "v1", RESOURCES)
    by_name = {r["name"]: r for r in doc["resources"]}
    assert {n: by_name[n]["shortNames"][0] for n in ("virtualmachines", "virtualmachineinstances",
                                                     "virtualmachineinstancemigrations",
                                                     "virtualmachineinstancereplicasets")} == {
        "virtualmachines": "vm", "virtualmachineinstances": "vmi", "virtualmachineinstancemigrations": "vmim",
        "virtualmachineinstancereplicasets": "vmirs"}
    assert by_name["virtualmachines/status"]["verbs"] == ["get", "patch", "update"]
    assert "watch" in by_name["virtualmachines"]["verbs"]
    groups = {g["name"] for g in compute_api_group_list(RESOURCES)["groups"]}
    assert {"kubevirt.io", "pool.kubevirt.io", "migrations.kubevirt.io"} <= groups
    with pytest.raises(NotFound):
        compute_api_resource_list("kubevirt.io", "v9", RESOURCES)
