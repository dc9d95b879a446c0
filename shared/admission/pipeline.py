"""The admission pipeline run for every create and update: shape checks (object, apiVersion,
kind), strict decoding against the resource's type with Kubernetes' ``fieldValidation``
handling of unknown fields, then the kind's admitter (defaults on CREATE, validation).

Failures: :class:`shared.errors.BadRequest` (400) for a body that is not an object of this
resource or a bad ``fieldValidation`` value; :class:`shared.errors.Invalid` (422) with causes
naming the fields for everything else.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.admission.cluster import DEFAULT_CLUSTER, ClusterConfig
from shared.admission.context import AdmissionContext, random_uuid, rfc3339_now
from shared.admission.kubevirt_rules import admit_kubevirt
from shared.admission.migration_rules import admit_migration, admit_migration_policy
from shared.admission.pvc_rules import admit_pvc
from shared.admission.restore_rules import admit_restore
from shared.admission.set_rules import admit_pool, admit_replica_set
from shared.admission.snapshot_rules import admit_snapshot
from shared.admission.vm_rules import admit_vm
from shared.admission.vmi_rules import admit_vmi
from shared.api.decoding import FieldErrors, decode_object
from shared.api.resources import ResourceInfo
from shared.errors import ApiError, BadRequest, Invalid, StatusCause, invalid

FIELD_VALIDATION_MODES = ("Strict", "Warn", "Ignore")
OPERATIONS = ("CREATE", "UPDATE")

Admitter = Callable[[dict[str, Any], AdmissionContext], list[StatusCause]]

ADMITTERS: dict[str, Admitter] = {
    "VirtualMachineInstance": admit_vmi,
    "VirtualMachine": admit_vm,
    "VirtualMachineInstanceReplicaSet": admit_replica_set,
    "VirtualMachinePool": admit_pool,
    "VirtualMachineInstanceMigration": admit_migration,
    "MigrationPolicy": admit_migration_policy,
    "KubeVirt": admit_kubevirt,
    "VirtualMachineSnapshot": admit_snapshot,
    "VirtualMachineRestore": admit_restore,
    "PersistentVolumeClaim": admit_pvc,
}
"""Kind-specific admitters; kinds without one (Node, Lease) are only decoded."""


@dataclass
class AdmissionResult:
    """``obj``: decoded, defaulted (on CREATE) and validated, unknown fields dropped;
    ``warnings``: texts for ``Warning`` headers (``unknown field "spec.foo"``, deprecations)."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def unknown_field_message(path: str) -> str:
    """Kubernetes' text for a field the schema does not declare."""
    return f'unknown field "{path}"'


def _check_shape(resource: ResourceInfo, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a {resource.kind} object, not {type(body).__name__}")
    shaped: dict[str, Any] = dict(body)
    api_version = shaped.setdefault("apiVersion", resource.api_version)
    kind = shaped.setdefault("kind", resource.kind)
    if api_version != resource.api_version:
        raise BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API version "
            f"({resource.api_version})"
        )
    if kind != resource.kind:
        raise BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
    return shaped


def _name_of(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name") or metadata.get("generateName")
        return name if isinstance(name, str) else None
    return None


def admit(
    resource: ResourceInfo,
    body: dict[str, Any],
    *,
    operation: str,
    old: dict[str, Any] | None = None,
    field_validation: str = "Warn",
    cluster: ClusterConfig = DEFAULT_CLUSTER,
    trusted: bool = False,
    now: Callable[[], str] = rfc3339_now,
    new_uuid: Callable[[], str] = random_uuid,
) -> AdmissionResult:
    """Admit ``body`` as a ``resource`` object for ``operation`` (CREATE or UPDATE; ``old`` is
    the stored object on UPDATE).

    ``field_validation`` is Kubernetes' query parameter: ``Strict`` rejects unknown fields
    (422, one cause per field), ``Warn`` drops them with a warning each, ``Ignore`` drops them
    silently. ``trusted`` marks KubeVirt's own components. ``metadata`` is passed through
    (only unknown metadata fields are dropped). Does no I/O and never changes ``body``.

    Raises BadRequest (400) and Invalid (422) as described in the module doc."""
    if operation not in OPERATIONS:
        raise BadRequest(f"unsupported admission operation {operation!r}: must be CREATE or UPDATE")
    if field_validation not in FIELD_VALIDATION_MODES:
        raise BadRequest(f'Invalid fieldValidation value "{field_validation}": must be one of Strict, Warn, Ignore')
    body = _check_shape(resource, body)
    name = _name_of(body)
    if resource.type is None:
        return AdmissionResult(obj=copy.deepcopy(body))
    try:
        decoded = decode_object(body, resource.type)
    except FieldErrors as exc:
        raise _invalid(resource, name, exc.causes) from None
    warnings: list[str] = []
    if decoded.unknown_fields and field_validation == "Strict":
        raise _invalid(resource, name, [
            StatusCause(field=path, message=unknown_field_message(path), reason="FieldValueInvalid")
            for path in decoded.unknown_fields
        ])
    if field_validation == "Warn":
        warnings.extend(unknown_field_message(path) for path in decoded.unknown_fields)
    obj = decoded.obj
    admitter = ADMITTERS.get(resource.kind)
    if admitter is not None:
        ctx = AdmissionContext(
            operation=operation, old=old, cluster=cluster, trusted=trusted, now=now, new_uuid=new_uuid
        )
        causes = admitter(obj, ctx)
        warnings.extend(ctx.warnings)
        if causes:
            raise _invalid(resource, name, causes)
    return AdmissionResult(obj=obj, warnings=warnings)


def _invalid(resource: ResourceInfo, name: str | None, causes: list[StatusCause]) -> ApiError:
    if not resource.group:
        return core_invalid(resource.kind, name, causes)
    return invalid(resource.kind, name, causes, group=resource.group)


def core_invalid(kind: str, name: str | None, causes: list[StatusCause]) -> ApiError:
    """kube-apiserver's ``Invalid`` for a core-group kind: ``<Kind> "<name>" is invalid: <field>:
    <body>`` (several errors in brackets, comma-separated; apimachinery ``errors.NewInvalid``)."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    shown = f' "{name}"' if name else ""
    return Invalid(f"{kind}{shown} is invalid: {summary}", kind=kind, name=name, causes=causes)
