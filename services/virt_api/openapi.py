"""OpenAPI documents of the served resources, generated from the msgspec types of
:mod:`shared.api`: ``/openapi/v2`` (Swagger 2.0, one document) and ``/openapi/v3`` (an index
plus one OpenAPI 3.0 document per group/version), shaped like the ones kube-apiserver serves
for custom resources so that kubectl can use them:

* every top-level definition carries ``x-kubernetes-group-version-kind`` (``kubectl explain``
  finds ``vm.spec.runStrategy`` through it);
* every PATCH operation carries its GVK and a ``fieldValidation`` query parameter, which is
  how kubectl >= 1.27 decides to validate on the server (``--validate=strict`` without client-side
  schema checks); PATCH bodies are JSON patch and merge patch only, so ``kubectl apply`` uses a
  merge patch (there is no strategic merge patch for custom resources);
* definitions are named like Kubernetes' (``io.kubevirt.v1.VirtualMachine``,
  ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``).

msgspec's JSON Schema output is rewritten: no ``$defs``/``title``, ``Optional`` without
``anyOf: [.., null]``, quantities and int-or-string as ``x-kubernetes-int-or-string``, loose
objects as ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache, lru_cache
from typing import Any

import msgspec
from msgspec import inspect as mi

from services.virt_api.openapi_names import META, V2_REF, V3_REF, compute_gvk, definition_name
from services.virt_api.openapi_paths import TRACE_DEFINITION, compute_paths, compute_trace_paths
from shared.api import meta
from shared.api.resources import RESOURCES, ResourceInfo
from shared.errors import NotFound

META_TYPES = (meta.ObjectMeta, meta.ListMeta, meta.Status, meta.WatchEvent, meta.Table, meta.PartialObjectMetadata)

TOP_LEVEL_FIELD_DOCS = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
    "metadata": "Standard object metadata: name, namespace, labels, annotations, ...",
    "spec": "The desired state.",
    "status": "The observed state, written by the system.",
}

HAND_WRITTEN: dict[str, dict[str, Any]] = {
    TRACE_DEFINITION: {
        "description": "The traces recorded on an object and their spans as stored "
        "(services/virt_api/trace_subresource.py).",
        "type": "object",
        "required": ["traceIds", "documents"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "traceIds": {"type": "array", "items": {"type": "string"}},
            "documents": {"type": "array", "description": "OTLP JSON ExportTraceServiceRequest documents.",
                          "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        },
    },
    f"{META}.Patch": {
        "description": "A JSON patch (application/json-patch+json) or JSON merge patch "
        "(application/merge-patch+json) document.",
        "type": "object",
    },
    f"{META}.Preconditions": {
        "description": "Must be fulfilled before a deletion is carried out.",
        "type": "object",
        "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}},
    },
    f"{META}.DeleteOptions": {
        "description": "Options of a DELETE request.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "dryRun": {"type": "array", "items": {"type": "string"}},
            "gracePeriodSeconds": {"type": "integer", "format": "int64"},
            "orphanDependents": {"type": "boolean"},
            "preconditions": {"$ref": f"{V2_REF}{META}.Preconditions"},
            "propagationPolicy": {"type": "string"},
        },
    },
}


def _struct_classes(types: tuple[type, ...]) -> dict[str, type]:
    found: dict[str, type] = {}

    def walk(info: mi.Type) -> None:
        if isinstance(info, mi.StructType):
            if info.cls.__name__ in found:
                if found[info.cls.__name__] is not info.cls:
                    raise TypeError(f"two API types are named {info.cls.__name__}")
                return
            found[info.cls.__name__] = info.cls
            for f in info.fields:
                walk(f.type)
        elif isinstance(info, (mi.ListType, mi.SetType, mi.VarTupleType)):
            walk(info.item_type)
        elif isinstance(info, mi.DictType):
            walk(info.value_type)
        elif isinstance(info, mi.UnionType):
            for t in info.types:
                walk(t)
        elif isinstance(info, mi.Metadata):
            walk(info.type)

    for info in mi.multi_type_info(types):
        walk(info)
    return found


class _Rewriter:
    """Turns msgspec's JSON Schema into Kubernetes-style OpenAPI (v2 or v3); each node is
    rewritten exactly once."""

    def __init__(self, names: dict[str, str], v3: bool) -> None:
        self.names = names
        self.v3 = v3
        self.prefix = V3_REF if v3 else V2_REF

    def rewrite(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.rewrite(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = self._clean(node)
        while "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            kinds = {o.get("type") for o in options}
            if len(options) == 1:
                node = self._clean({**options[0], **rest})
            elif kinds <= {"integer", "number", "string"} and "string" in kinds:
                return {**rest, **self._int_or_string()}
            else:
                return {**rest, "anyOf": [self.rewrite(o) for o in options]}
        if "$ref" in node:
            return self._reference(node)
        if "enum" in node and "type" not in node:
            node["type"] = "string"
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
            return self._loose_object(node)
        out = dict(node)
        if "properties" in out:
            out["properties"] = {name: self.rewrite(schema) for name, schema in out["properties"].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(out.get(key), dict):
                out[key] = self.rewrite(out[key])
        return out

    @staticmethod
    def _clean(node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        node.pop("title", None)
        if "default" in node and node["default"] is None:
            del node["default"]
        if node.get("required") == []:
            del node["required"]
        if node.get("additionalProperties") is False:
            del node["additionalProperties"]
        if isinstance(node.get("description"), str):
            node["description"] = node["description"].replace("``", "")
        return node

    def _int_or_string(self) -> dict[str, Any]:
        if self.v3:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        return {"type": "string", "format": "int-or-string"}

    def _reference(self, node: dict[str, Any]) -> dict[str, Any]:
        target = self.prefix + self.names[node["$ref"].rsplit("/", 1)[1]]
        extra = {k: v for k, v in node.items() if k == "description"}
        if self.v3 and extra:
            return {"allOf": [{"$ref": target}], **extra}
        return {"$ref": target, **extra}

    def _loose_object(self, node: dict[str, Any]) -> dict[str, Any]:
        if self.v3:
            return {**node, "x-kubernetes-preserve-unknown-fields": True}
        return {**node, "additionalProperties": {}}


def compute_definitions(resources: tuple[ResourceInfo, ...], *, v3: bool) -> dict[str, dict[str, Any]]:
    """OpenAPI definitions (v2) or component schemas (v3) for ``resources``, their Lists and
    the meta types, keyed by Kubernetes-style names."""
    typed = [(r, r.type) for r in resources if r.type is not None]
    types = tuple(t for _, t in typed) + META_TYPES
    classes = _struct_classes(types)
    names = {name: definition_name(cls) for name, cls in classes.items()}
    _, components = msgspec.json.schema_components(types, ref_template=V2_REF + "{name}")
    rewriter = _Rewriter(names, v3)
    definitions = {names[name]: rewriter.rewrite(schema) for name, schema in components.items()}
    prefix = V3_REF if v3 else V2_REF
    for resource, resource_type in typed:
        name = definition_name(resource_type)
        top = definitions[name]
        top["x-kubernetes-group-version-kind"] = [compute_gvk(resource)]
        for field_name, text in TOP_LEVEL_FIELD_DOCS.items():
            prop = top["properties"].get(field_name)
            if prop is None or "description" in prop:
                continue
            if v3 and "$ref" in prop:
                top["properties"][field_name] = {"allOf": [{"$ref": prop["$ref"]}], "description": text}
            else:
                prop["description"] = text
        definitions[name.rsplit(".", 1)[0] + "." + resource.list_kind] = {
            "description": f"A list of {resource.kind} objects.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": TOP_LEVEL_FIELD_DOCS["apiVersion"]},
                "kind": {"type": "string", "description": TOP_LEVEL_FIELD_DOCS["kind"]},
                "items": {"type": "array", "items": {"$ref": prefix + name}},
                "metadata": {"$ref": f"{prefix}{META}.ListMeta"},
            },
            "x-kubernetes-group-version-kind": [compute_gvk(resource, resource.list_kind)],
        }
    for name, schema in HAND_WRITTEN.items():
        definitions[name] = json.loads(json.dumps(schema).replace(V2_REF, prefix))
    return definitions


# ---- documents ------------------------------------------------------------------------------


def _group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@lru_cache(maxsize=1)
def _v2() -> str:
    paths: dict[str, Any] = {}
    for resource in RESOURCES:
        paths.update(compute_paths(resource, v3=False))
        paths.update(compute_trace_paths(resource, v3=False))
    doc = {
        "swagger": "2.0",
        "info": {"title": "kubevirt-py", "version": "v1"},
        "paths": paths,
        "definitions": compute_definitions(RESOURCES, v3=False),
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }
    return json.dumps(doc)


def openapi_v2() -> dict[str, Any]:
    """The Swagger 2.0 document of every resource in :data:`RESOURCES` (a fresh dict)."""
    return json.loads(_v2())


@cache
def _v3(group: str, version: str) -> str:
    resources = tuple(r for r in RESOURCES if (r.group, r.version) == (group, version))
    if not resources:
        raise NotFound(f"no OpenAPI v3 document for {_gv_path(group, version)}")
    paths: dict[str, Any] = {}
    for resource in resources:
        paths.update(compute_paths(resource, v3=True))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "kubevirt-py", "version": version},
        "paths": paths,
        "components": {
            "schemas": compute_definitions(resources, v3=True),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }
    return json.dumps(doc)


def openapi_v3(group: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group/version (group "" = core ``api/v1``).
    Raises :class:`shared.errors.NotFound` for a group/version that is not served."""
    return json.loads(_v3(group, version))


def openapi_v3_index() -> dict[str, Any]:
    """``/openapi/v3``: each group/version's document URL, with a content hash kubectl caches by."""
    paths = {}
    for group, version in _group_versions():
        digest = hashlib.sha512(_v3(group, version).encode()).hexdigest().upper()[:128]
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
