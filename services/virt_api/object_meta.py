"""ObjectMeta rules every write must follow, whatever the kind.

Owns: the checks kube-apiserver applies to ``metadata`` before an object is stored
(k8s.io/apimachinery ``api/validation/objectmeta.go`` and ``util/validation``): name and
generateName are lowercase RFC 1123 subdomains, namespace an RFC 1123 label, labels and
annotations qualified names with bounded values, finalizers and ownerReferences of the right
shape; and clearing the fields the server owns on create. Kind-specific rules live in admission.
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import BadRequest, StatusCause, invalid

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
DNS1123_LABEL = re.compile(rf"^{_DNS1123_LABEL}$")
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_ANNOTATIONS_BYTES = 256 * 1024

#: Fields the server sets; a client's values are dropped on create (kube-apiserver BeforeCreate).
SERVER_OWNED_ON_CREATE = (
    "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink",
    "managedFields",
)


def compute_validation_causes(metadata: Any, *, namespaced: bool) -> list[StatusCause]:
    """Every ObjectMeta rule ``metadata`` breaks, as causes with ``metadata.*`` field paths.

    ``metadata`` may be anything a client sent; a non-object gives one cause.
    """
    if not isinstance(metadata, dict):
        return [StatusCause("metadata", "must be an object", "FieldValueInvalid")]
    causes: list[StatusCause] = []
    name = metadata.get("name")
    generate_name = metadata.get("generateName")
    if name is not None and not isinstance(name, str):
        causes.append(StatusCause("metadata.name", "must be a string"))
    elif name:
        causes += _subdomain_causes("metadata.name", name, prefix=False)
    if generate_name is not None and not isinstance(generate_name, str):
        causes.append(StatusCause("metadata.generateName", "must be a string"))
    elif generate_name and not name:
        causes += _subdomain_causes("metadata.generateName", generate_name, prefix=True)
    if not name and not generate_name:
        causes.append(StatusCause("metadata.name", "name or generateName is required", "FieldValueRequired"))
    namespace = metadata.get("namespace")
    if namespaced and namespace is not None:
        if not isinstance(namespace, str) or not DNS1123_LABEL.match(namespace) or len(namespace) > 63:
            causes.append(StatusCause("metadata.namespace", f"Invalid value: {namespace!r}: a lowercase RFC 1123 "
                                      "label must consist of lower case alphanumeric characters or '-' (at most 63)"))
    causes += _labels_causes(metadata.get("labels"))
    causes += _annotations_causes(metadata.get("annotations"))
    causes += _finalizers_causes(metadata.get("finalizers"))
    causes += _owner_references_causes(metadata.get("ownerReferences"))
    return causes


def apply_metadata_rules(obj: dict[str, Any], *, kind: str, group: str, namespaced: bool) -> None:
    """Raise Invalid (422) listing every broken ObjectMeta rule of ``obj``; BadRequest when
    ``metadata`` is missing the object shape altogether."""
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = obj["metadata"] = {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object")
    causes = compute_validation_causes(metadata, namespaced=namespaced)
    if causes:
        raise invalid(kind, metadata.get("name") if isinstance(metadata.get("name"), str) else None, causes,
                      group=group or "core")


def clear_server_owned_fields(metadata: dict[str, Any]) -> None:
    """Drop what the server assigns on create (uid, timestamps, generation...), in place."""
    for key in SERVER_OWNED_ON_CREATE:
        metadata.pop(key, None)


def _subdomain_causes(field: str, value: str, *, prefix: bool) -> list[StatusCause]:
    checked = value[:-1] if prefix and value.endswith("-") else value
    if len(value) > 253 or not checked or not DNS1123_SUBDOMAIN.match(checked):
        return [StatusCause(field, f"Invalid value: {value!r}: a lowercase RFC 1123 subdomain must consist of "
                            "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                            "alphanumeric character (at most 253 characters)")]
    return []


def _qualified_name_causes(field: str, key: Any) -> list[StatusCause]:
    if not isinstance(key, str):
        return [StatusCause(field, "keys must be strings")]
    prefix, slash, name = key.rpartition("/")
    bad = (slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or (
        len(name) > 63 or not _QUALIFIED_NAME_PART.match(name)
    )
    if bad:
        return [StatusCause(field, f"Invalid value: {key!r}: name part must consist of alphanumeric characters, "
                            "'-', '_' or '.', must start and end with an alphanumeric character (at most 63), "
                            "with an optional DNS subdomain prefix and '/'")]
    return []


def _labels_causes(labels: Any) -> list[StatusCause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [StatusCause("metadata.labels", "must be an object of string values")]
    causes = []
    for key, value in labels.items():
        causes += _qualified_name_causes("metadata.labels", key)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(StatusCause("metadata.labels", f"Invalid value: {value!r}: a valid label value must be "
                                      "63 characters or less, empty or alphanumeric with '-', '_' or '.' inside"))
    return causes


def _annotations_causes(annotations: Any) -> list[StatusCause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [StatusCause("metadata.annotations", "must be an object of string values")]
    causes, size = [], 0
    for key, value in annotations.items():
        causes += _qualified_name_causes("metadata.annotations", key)
        if not isinstance(value, str):
            causes.append(StatusCause("metadata.annotations", f"value of {key!r} must be a string"))
        else:
            size += len(str(key)) + len(value)
    if size > MAX_ANNOTATIONS_BYTES:
        causes.append(StatusCause("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes",
                                  "FieldValueTooLong"))
    return causes


def _finalizers_causes(finalizers: Any) -> list[StatusCause]:
    if finalizers is None:
        return []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers):
        return [StatusCause("metadata.finalizers", "must be a list of non-empty strings")]
    return []


def _owner_references_causes(refs: Any) -> list[StatusCause]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [StatusCause("metadata.ownerReferences", "must be a list")]
    causes = []
    for i, ref in enumerate(refs):
        field = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            causes.append(StatusCause(field, "must be an object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref.get(key), str) or not ref.get(key):
                causes.append(StatusCause(f"{field}.{key}", "Required value", "FieldValueRequired"))
        for key in ("controller", "blockOwnerDeletion"):
            if key in ref and not isinstance(ref[key], bool):
                causes.append(StatusCause(f"{field}.{key}", "must be a boolean"))
    return causes
