"""Pure rules for server-managed object metadata (no I/O): what create, update and graceful delete
do to ``metadata``, and how errors are phrased.

Sources: k8s.io/apiserver ``pkg/registry/rest`` (create: uid, creationTimestamp, generateName;
``BeforeDelete``: deletionTimestamp, deletionGracePeriodSeconds, generation+1), apiextensions
``customresource`` strategy (generation bumps when anything but metadata/status changed; with a
status subresource the main resource keeps the stored status and ``/status`` keeps everything but
status), ``pkg/api/errors`` messages, ``names.SimpleNameGenerator`` (5 random chars from a
consonant/digit alphabet).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from shared.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    StatusCause,
    invalid,
)

#: names.SimpleNameGenerator's alphabet (no vowels, no look-alike characters)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATED_SUFFIX = 5
_MAX_NAME = 63
#: metadata fields only the server sets; an update cannot change them
_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of JSON-ready data (a msgspec round trip: several times faster than
    ``copy.deepcopy`` on object dicts)."""
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(value))
    return out


def rfc3339_now() -> str:
    """Current UTC time as Kubernetes writes timestamps (seconds precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compute_generated_name(generate_name: str, rng: random.Random | None = None) -> str:
    """``generateName`` + 5 random characters, the prefix cut so the name stays within 63."""
    rng = rng or random.SystemRandom()
    prefix = generate_name[: _MAX_NAME - _GENERATED_SUFFIX]
    return prefix + "".join(rng.choice(_NAME_ALPHABET) for _ in range(_GENERATED_SUFFIX))


def qualified_resource(plural: str, group: str | None) -> str:
    """``virtualmachines.kubevirt.io`` (or ``nodes`` for the core group) as error messages name it."""
    if group is None:
        group = lookup_group(plural)
    return f"{plural}.{group}" if group else plural


def lookup_group(plural: str) -> str:
    """API group of a resource plural from ``shared.api.resources`` (empty when unknown)."""
    try:
        from shared.api.resources import RESOURCES  # owned by the API-types helper
    except ImportError:
        return ""
    for res in RESOURCES:
        if res.plural == plural:
            return res.group
    return ""


def not_found(plural: str, name: str, group: str | None = None) -> ApiError:
    group = lookup_group(plural) if group is None else group
    return NotFound(f'{qualified_resource(plural, group)} "{name}" not found', kind=plural, name=name, group=group)


def already_exists(plural: str, name: str, group: str | None = None) -> ApiError:
    group = lookup_group(plural) if group is None else group
    return AlreadyExists(
        f'{qualified_resource(plural, group)} "{name}" already exists', kind=plural, name=name, group=group
    )


def conflict(plural: str, name: str, group: str | None = None, why: str | None = None) -> ApiError:
    """Kubernetes' optimistic-concurrency message (or ``why`` for other refused changes)."""
    group = lookup_group(plural) if group is None else group
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return Conflict(
        f'Operation cannot be fulfilled on {qualified_resource(plural, group)} "{name}": {why}',
        kind=plural,
        name=name,
        group=group,
    )


def stored_form(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as kept in KV: ``resourceVersion`` is the revision, never stored inside."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta or "selfLink" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k not in ("resourceVersion", "selfLink")}}
    return obj


def with_resource_version(obj: dict[str, Any], revision: int) -> dict[str, Any]:
    """``obj`` (freshly decoded, owned by the caller) with ``metadata.resourceVersion`` set."""
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def compute_created(obj: dict[str, Any], *, namespaced: bool, kind_label: str, now: str | None = None,
                    uid: str | None = None) -> dict[str, Any]:
    """Stored form of a new object: uid, creationTimestamp, generation 1; a namespace only when
    namespaced; deletion fields dropped. ``metadata.name`` must already be set (see
    :func:`compute_generated_name`). Raises Invalid when name or namespace is missing."""
    out = _copy(obj)
    meta = out.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise invalid(kind_label, None, [StatusCause("metadata", "must be an object", "FieldValueInvalid")])
    if not meta.get("name"):
        raise invalid(
            kind_label, None,
            [StatusCause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")],
        )
    if namespaced and not meta.get("namespace"):
        raise invalid(
            kind_label, meta["name"],
            [StatusCause("metadata.namespace", "Required value", "FieldValueRequired")],
        )
    if not namespaced:
        meta.pop("namespace", None)
    for key in ("resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
        meta.pop(key, None)
    meta["uid"] = uid or str(uuid.uuid4())
    meta["creationTimestamp"] = now or rfc3339_now()
    meta["generation"] = 1
    return out


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def is_spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when anything but metadata and status differs (the CRD strategy's generation rule)."""
    return _without(old, "metadata", "status") != _without(new, "metadata", "status")


def compute_updated(old: dict[str, Any], new: dict[str, Any], *, subresource: str | None,
                    has_status_subresource: bool, kind_label: str) -> dict[str, Any]:
    """Stored form after an update of ``old`` (stored form) with the caller's ``new``.

    Server-owned metadata is kept from ``old``; ``/status`` keeps everything but status; the main
    resource keeps the stored status when the resource has a status subresource. ``generation``
    is bumped when the spec part changed. Raises Invalid when finalizers are added to an object
    being deleted (Kubernetes forbids it), and Conflict when ``new`` names another
    ``metadata.uid`` (a uid in the body is a precondition, as kube-apiserver's update checks it).
    """
    new = stored_form(new)
    given_uid = (new.get("metadata") or {}).get("uid")
    stored_uid = (old.get("metadata") or {}).get("uid")
    if given_uid and stored_uid and given_uid != stored_uid:
        raise Conflict(f"Precondition failed: UID in precondition: {given_uid}, UID in object meta: {stored_uid}")
    if subresource == "status":
        out = _copy(old)
        if "status" in new:
            out["status"] = _copy(new["status"])
        else:
            out.pop("status", None)
        return out
    out = _copy(new)
    meta = out.setdefault("metadata", {})
    old_meta = old.get("metadata") or {}
    for key in _SERVER_OWNED + ("name", "namespace", "generateName"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta.pop("managedFields", None)
    if has_status_subresource:
        if "status" in old:
            out["status"] = _copy(old["status"])
        else:
            out.pop("status", None)
    if "deletionTimestamp" in old_meta:
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            raise invalid(
                kind_label, old_meta.get("name"),
                [StatusCause("metadata.finalizers",
                             "Forbidden: no new finalizers can be added if the object is being deleted",
                             "FieldValueForbidden")],
            )
    if is_spec_changed(old, out):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return out


def compute_deleting(old: dict[str, Any], *, grace_period_seconds: int | None,
                     now: str | None = None) -> dict[str, Any]:
    """Stored form of an object entering graceful deletion (it has finalizers): deletionTimestamp,
    deletionGracePeriodSeconds and generation+1, as ``rest.BeforeDelete`` does."""
    out = _copy(old)
    meta = out.setdefault("metadata", {})
    meta["deletionTimestamp"] = now or rfc3339_now()
    meta["deletionGracePeriodSeconds"] = int(grace_period_seconds or 0)
    if meta.get("generation"):
        meta["generation"] = int(meta["generation"]) + 1
    return out


def is_finalized(obj: dict[str, Any]) -> bool:
    """Being deleted and no finalizer left: the object must now be removed."""
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")


def owner_uids(obj: dict[str, Any]) -> list[str]:
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if ref.get("uid")]


def compute_without_owner(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    """Stored form of ``obj`` with the ownerReference to ``uid`` removed (orphaning)."""
    out = _copy(obj)
    refs = [r for r in out["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        out["metadata"]["ownerReferences"] = refs
    else:
        out["metadata"].pop("ownerReferences", None)
    return out


def parse_resource_version(resource_version: str | None, what: str = "resourceVersion") -> int | None:
    """A resourceVersion given by a client as the revision it names (None/"" = none given).
    Raises BadRequest, naming the field ``what``, for anything but a non-negative integer."""
    if resource_version is None or resource_version == "":
        return None
    try:
        value = int(resource_version)
    except (TypeError, ValueError):
        raise BadRequest(f'{what} "{resource_version}" is not a valid resource version') from None
    if value < 0:
        raise BadRequest(f'{what} "{resource_version}" is not a valid resource version')
    return value
