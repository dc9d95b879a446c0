"""Admission of core ``v1`` PersistentVolumeClaims as kube-apiserver does it (k8s.io/kubernetes
``pkg/apis/core/validation/validation.go`` ValidatePersistentVolumeClaim(Spec|Update), the
``SetDefaults_PersistentVolumeClaimSpec`` default and the StorageObjectInUseProtection admission
plugin).

``spec.volumeMode`` defaults to ``Filesystem``; on CREATE the claim gets the
``kubernetes.io/pvc-protection`` finalizer. Validation (CREATE and UPDATE): at least one access
mode, known access modes, ``ReadWriteOncePod`` alone, a ``resources.requests.storage`` that is a
quantity greater than zero, a known ``volumeMode``. UPDATE: the spec is immutable except that a
Bound claim may grow ``resources.requests.storage``, an unset ``volumeName`` may be set and an
unset ``storageClassName`` may be set.

Cause messages are Kubernetes' field error bodies (``Required value: ...``, ``Forbidden: ...``,
``Unsupported value: ...``, ``Invalid value: ...``).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import forbidden, invalid_value, not_supported, required
from shared.api.quantity import QuantityError, parse_quantity
from shared.api.storage import PVC_PROTECTION_FINALIZER, AccessMode, ClaimPhase
from shared.errors import StatusCause

VOLUME_MODES = ("Block", "Filesystem")
STORAGE_PATH = "spec.resources[storage]"
SPEC_IMMUTABLE = ("spec is immutable after creation except resources.requests and volumeAttributesClassName "
                  "for bound claims")
SHRINK_FORBIDDEN = "field can not be less than previous value"
QUANTITY_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def _go_quote(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unsupported_message(value: Any, supported: list[str]) -> str:
    """Kubernetes' ``field.NotSupported`` body."""
    return f"Unsupported value: {_go_quote(value)}: supported values: " + ", ".join(_go_quote(s) for s in supported)


def check_access_modes(spec: dict[str, Any]) -> list[StatusCause]:
    """At least one mode; each known; ``ReadWriteOncePod`` not combined with another."""
    modes = spec.get("accessModes") or []
    if not modes:
        return [required("spec.accessModes", "Required value: at least 1 access mode is required")]
    causes: list[StatusCause] = []
    known = sorted(str(m) for m in AccessMode)
    for mode in modes:
        if mode not in known:
            causes.append(not_supported("spec.accessModes", unsupported_message(mode, known)))
    if AccessMode.READ_WRITE_ONCE_POD in modes and len(modes) > 1:
        causes.append(forbidden("spec.accessModes", "Forbidden: may not use ReadWriteOncePod with other access modes"))
    return causes


def storage_request(spec: dict[str, Any]) -> Any:
    """``spec.resources.requests.storage`` as given (None when absent)."""
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def check_storage_request(spec: dict[str, Any]) -> list[StatusCause]:
    """A storage request is required and must be a quantity greater than zero."""
    value = storage_request(spec)
    if value is None:
        return [required(STORAGE_PATH, "Required value")]
    try:
        size = parse_quantity(value)
    except (QuantityError, TypeError, AttributeError):
        return [invalid_value(STORAGE_PATH, f"Invalid value: {_go_quote(value)}: {QUANTITY_MESSAGE}")]
    if size <= 0:
        return [invalid_value(STORAGE_PATH, f"Invalid value: {_go_quote(value)}: must be greater than zero")]
    return []


def check_volume_mode(spec: dict[str, Any]) -> list[StatusCause]:
    """``volumeMode`` is Block or Filesystem."""
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        return [not_supported("spec.volumeMode", unsupported_message(mode, list(VOLUME_MODES)))]
    return []


def _size(value: Any) -> Decimal | None:
    try:
        return parse_quantity(value) if value is not None else None
    except (QuantityError, TypeError, AttributeError):
        return None


def check_update(new: dict[str, Any], old: dict[str, Any]) -> list[StatusCause]:
    """Kubernetes' PVC spec immutability (``Forbidden`` at ``spec``) and no shrinking of the
    storage request (``Forbidden`` at ``spec.resources.requests.storage``)."""
    new_spec = copy.deepcopy(new.get("spec") or {})
    old_spec = copy.deepcopy(old.get("spec") or {})
    if not old_spec.get("volumeName"):
        old_spec.pop("volumeName", None)
        new_spec.pop("volumeName", None)
    if old_spec.get("storageClassName") is None:
        new_spec.pop("storageClassName", None)
    new_spec.pop("volumeAttributesClassName", None)
    old_spec.pop("volumeAttributesClassName", None)
    bound = ((old.get("status") or {}).get("phase")) == ClaimPhase.BOUND
    old_size, new_size = _size(storage_request(old_spec)), _size(storage_request(new_spec))
    if bound and isinstance((new_spec.get("resources") or {}).get("requests"), dict):
        new_spec["resources"]["requests"]["storage"] = storage_request(old_spec)
    causes: list[StatusCause] = []
    if _normalised(new_spec) != _normalised(old_spec):
        causes.append(forbidden("spec", f"Forbidden: {SPEC_IMMUTABLE}"))
    if old_size is not None and new_size is not None and new_size < old_size:
        causes.append(forbidden("spec.resources.requests.storage", f"Forbidden: {SHRINK_FORBIDDEN}"))
    return causes


def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    """Quantities compared by value (``1Gi`` equals ``1024Mi``), as Kubernetes' semantic equality."""
    out = copy.deepcopy(spec)
    for group in ("requests", "limits"):
        values = (out.get("resources") or {}).get(group)
        if isinstance(values, dict):
            out["resources"][group] = {k: _size(v) if _size(v) is not None else v for k, v in values.items()}
    return out


def admit_pvc(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Default (CREATE), validate and check the update of a PersistentVolumeClaim, in place."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")  # a default, applied on every write as Kubernetes' decoding does
    if ctx.is_create:
        metadata = obj.setdefault("metadata", {})
        finalizers = list(metadata.get("finalizers") or [])
        if PVC_PROTECTION_FINALIZER not in finalizers:
            metadata["finalizers"] = [*finalizers, PVC_PROTECTION_FINALIZER]
    causes = check_access_modes(spec) + check_storage_request(spec) + check_volume_mode(spec)
    if not ctx.is_create and ctx.old is not None:
        causes += check_update(obj, ctx.old)
    return causes
