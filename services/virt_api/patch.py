"""PATCH bodies: which patch media types are served and how each applies to a stored object.

Owns: ``application/merge-patch+json`` (RFC 7386, a dozen lines, written here) and
``application/json-patch+json`` (RFC 6902, through the ``jsonpatch`` library), and for the built-in kinds (Node, Lease)
``application/strategic-merge-patch+json`` (:mod:`services.virt_api.strategic_merge`), which
kubectl uses for them (cordon, taint). Like kube-apiserver for custom resources, strategic merge
on KubeVirt's kinds and server-side apply (``application/apply-patch+yaml``) are refused with
415: strategic merge needs Go struct tags that custom resources do not have. The caller
re-validates the patched object with admission.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import msgspec

from services.virt_api.negotiation import check_encodable
from services.virt_api.safe_decoding import decode_json
from services.virt_api.strategic_merge import compute_strategic_merge
from shared.errors import BadRequest, Invalid, UnsupportedMediaType

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

#: The patch types this server accepts (also what its OpenAPI should list for PATCH).
SUPPORTED_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH)
#: API groups of built-in (non-CRD) kinds: these also take strategic merge patches.
BUILTIN_GROUPS = ("", "coordination.k8s.io")


def check_patch_type(content_type: str | None, group: str | None = None) -> str:
    """The bare patch media type when this server applies it to a kind of API ``group`` (None: a
    KubeVirt kind); UnsupportedMediaType (415) otherwise (checked before anything is read, as
    kube-apiserver does)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    accepted = (*SUPPORTED_PATCH_TYPES, STRATEGIC_MERGE_PATCH) if group in BUILTIN_GROUPS else SUPPORTED_PATCH_TYPES
    if kind not in accepted:
        raise UnsupportedMediaType(
            f'the body of the request was in an unknown format "{kind}" - accepted media types include: '
            + ", ".join(accepted)
        )
    return kind


def apply_patch(current: dict[str, Any], raw: bytes, content_type: str | None,
                group: str | None = None) -> dict[str, Any]:
    """Return a new object: ``current`` with the patch in ``raw`` applied (``current`` untouched).

    ``group`` is the API group of the object's kind (strategic merge only for built-in groups).
    Raises UnsupportedMediaType (415) for other patch types (strategic merge, apply), BadRequest
    (400) for a patch document that does not parse or has the wrong shape, Invalid (422) when a
    JSON patch cannot be applied (missing path, failed ``test``), and BadRequest when the result
    is not an object.
    """
    kind = check_patch_type(content_type, group)
    if kind == MERGE_PATCH:
        patch = _decode(raw)
        result = compute_merge_patch(current, patch)
    elif kind == STRATEGIC_MERGE_PATCH:
        result = compute_strategic_merge(current, _decode(raw))
    else:
        ops = _decode(raw)
        if not isinstance(ops, list):
            raise BadRequest("a JSON patch must be a JSON array of operations")
        try:
            jsonpatch.JsonPatch(ops)  # checks every operation's shape before any is applied
        except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException) as err:
            raise BadRequest(f"invalid JSON patch: {err}") from err
        result = copy.deepcopy(current)
        for op in ops:  # one at a time, so that an error names the operation that failed
            try:
                result = jsonpatch.JsonPatch([op]).apply(result, in_place=True)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, AttributeError,
                    KeyError, IndexError, ValueError) as err:
                raise Invalid(f"the JSON patch could not be applied: {compute_patch_failure(op, err)}") from err
    if not isinstance(result, dict):
        raise BadRequest("the patched object is not a JSON object")
    return result


def compute_patch_precondition(current: dict[str, Any], raw: bytes, content_type: str | None,
                               group: str | None = None) -> str | None:
    """The ``metadata.resourceVersion`` the patch itself sets (a precondition, as in Kubernetes),
    or None when it sets none: the patch applied to ``current`` without its resourceVersion. A
    patch that cannot be applied that way (e.g. a JSON-patch ``test`` of the version) sets none
    here; applying it to the real object decides. Raises what :func:`apply_patch` raises for a
    patch type or document it refuses."""
    meta = {k: v for k, v in (current.get("metadata") or {}).items() if k != "resourceVersion"}
    try:
        probe = apply_patch({**current, "metadata": meta}, raw, content_type, group)
    except Invalid:
        return None
    version = (probe.get("metadata") or {}).get("resourceVersion") if isinstance(probe.get("metadata"), dict) else None
    return str(version) if version else None


def compute_patch_failure(op: dict[str, Any], err: Exception) -> str:
    """One line on why JSON patch operation ``op`` failed, naming its paths (worded like
    kube-apiserver's JSON patch errors). The library's own message is not used as is: for a
    missing member it quotes the whole parent object."""
    name, path = op.get("op"), op.get("path")
    if isinstance(err, jsonpatch.JsonPatchTestFailed):
        return f"testing value {path} failed"
    if isinstance(err, jsonpatch.JsonPatchPathNotFound) and name in ("move", "copy"):
        return f"{name} operation does not apply: doc is missing from path: {op.get('from')}"
    if isinstance(err, (jsonpatch.JsonPatchPathNotFound, jsonpatch.JsonPointerException)):
        return f"{name} operation does not apply: doc is missing path: {path}"
    if isinstance(err, jsonpatch.JsonPatchConflict):
        return f"{name} operation does not apply at {path}: {err}"
    return f"{name} operation does not apply at {path}: {type(err).__name__}"


def compute_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, ``null`` removes a key, anything else
    (lists included) replaces. Pure: neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = compute_merge_patch(result.get(key), value)
    return result


def _decode(raw: bytes) -> Any:
    """The patch document; BadRequest when it does not parse or nests deeper than a body may
    (``safe_decoding.MAX_NESTING_DEPTH``: the merge and the admission walk recurse over it)."""
    try:
        value = decode_json(raw)
    except msgspec.DecodeError as err:
        raise BadRequest(f"the patch could not be decoded as JSON: {err}") from err
    return check_encodable(value)
