"""Strategic merge patch (``application/strategic-merge-patch+json``) for the built-in kinds this
server stores (Node, Lease), which kubectl patches that way: ``kubectl cordon``/``uncordon``
(``{"spec": {"unschedulable": true}}``), ``kubectl taint`` (the whole ``spec.taints`` list),
``kubectl label``/``annotate``.

Kubernetes' rules (k8s.io/apimachinery ``pkg/util/strategicpatch``), for the fields of these kinds:
objects merge key by key and ``null`` deletes, as in a JSON merge patch; a list replaces the old
one unless the Go type tags it ``patchStrategy:"merge"`` — here :data:`MERGE_KEYS`: Node
``status.conditions`` and ``status.addresses`` (by ``type``), ``metadata.ownerReferences`` (by
``uid``) and ``metadata.finalizers`` (a set of strings). Directives: ``$patch: replace`` (the
object replaces), ``$patch: delete`` (removes the object, or the list item with that key),
``$deleteFromPrimitiveList/<field>``; ``$setElementOrder/<field>`` and ``$retainKeys`` are
accepted and ignored (order of merged items: the old ones, then the new). Custom resources never
get here (415, as kube-apiserver answers for CRDs).
"""

from __future__ import annotations

import copy
from typing import Any

from shared.errors import BadRequest

MERGE_KEYS: dict[tuple[str, ...], str | None] = {
    ("metadata", "finalizers"): None,
    ("metadata", "ownerReferences"): "uid",
    ("status", "conditions"): "type",
    ("status", "addresses"): "type",
}
"""Lists merged instead of replaced: path -> merge key (None: a list of primitives, merged as a set)."""

DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"


def compute_strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """``target`` with the strategic merge ``patch`` applied (neither is modified). Raises
    BadRequest for a malformed directive."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive is not None:
        raise BadRequest(f"Unknown patch type: {directive}")
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$retainKeys" or key.startswith(SET_ELEMENT_ORDER):
            continue
        if key.startswith(DELETE_FROM_PRIMITIVE):
            field = key[len(DELETE_FROM_PRIMITIVE):]
            if not isinstance(value, list):
                raise BadRequest(f"{key} must be a list")
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child = (*path, key)
        if isinstance(value, list) and child in MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, MERGE_KEYS[child])
            continue
        merged = compute_strategic_merge(result.get(key), value, child)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _merge_list(old: Any, patch: list[Any], key: str | None) -> list[Any]:
    items: list[Any] = copy.deepcopy(old) if isinstance(old, list) else []
    if key is None:
        return items + [v for v in patch if v not in items]
    for entry in patch:
        if not isinstance(entry, dict) or key not in entry:
            raise BadRequest(f"map: {entry!r} does not contain declared merge key: {key}")
        index = next((i for i, item in enumerate(items) if isinstance(item, dict) and item.get(key) == entry[key]),
                     None)
        if entry.get("$patch") == "delete":
            if index is not None:
                items.pop(index)
            continue
        if index is None:
            items.append(compute_strategic_merge({}, entry))
        else:
            items[index] = compute_strategic_merge(items[index], entry)
    return items
