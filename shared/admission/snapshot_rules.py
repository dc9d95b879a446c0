"""Admission of VirtualMachineSnapshots (KubeVirt ``pkg/storage/admitters/vmsnapshot.go``).

CREATE: ``spec.source.apiGroup`` must be given (``missing apiGroup``, FieldValueNotFound) and be
``kubevirt.io`` (``invalid apiGroup``), ``spec.source.kind`` must be ``VirtualMachine``
(``invalid kind``). UPDATE: ``spec`` may not change (``spec in immutable after creation`` -
KubeVirt's spelling). On both:

* ``spec.failureDeadline`` must be a non-negative Go duration. KubeVirt's webhook fails to decode
  the object otherwise and answers a bare 400 with Go's parse error; this API answers Invalid (422)
  with a ``FieldValueInvalid`` cause at ``spec.failureDeadline`` carrying Go's text instead, as its
  other refusals, and also refuses a negative deadline (which would fail the snapshot at once);
* ``spec.deletionPolicy`` must be ``Delete`` or ``Retain`` (KubeVirt's CRD enum, which
  kube-apiserver enforces with ``Unsupported value: ...``, FieldValueNotSupported).
"""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import invalid_value, not_found, not_supported
from shared.admission.go_duration import DurationError, parse_go_duration
from shared.admission.pvc_rules import unsupported_message
from shared.api.snapshot_vocabulary import DeletionPolicy
from shared.errors import StatusCause

SNAPSHOT_WEBHOOK = "virtualmachinesnapshot-validator.snapshot.kubevirt.io"
RESTORE_WEBHOOK = "virtualmachinerestore-validator.snapshot.kubevirt.io"
CORE_GROUP = "kubevirt.io"
VIRTUAL_MACHINE_KIND = "VirtualMachine"
MISSING_API_GROUP = "missing apiGroup"
INVALID_API_GROUP = "invalid apiGroup"
INVALID_KIND = "invalid kind"
SPEC_IMMUTABLE = "spec in immutable after creation"


def check_source_reference(ref: dict[str, Any], path: str) -> list[StatusCause]:
    """KubeVirt's checks of a TypedLocalObjectReference that must name a VirtualMachine
    (``spec.source`` of a snapshot, ``spec.target`` of a restore): at most one cause."""
    group = ref.get("apiGroup")
    if group is None:
        return [not_found(f"{path}.apiGroup", MISSING_API_GROUP)]
    if group != CORE_GROUP:
        return [invalid_value(f"{path}.apiGroup", INVALID_API_GROUP)]
    if ref.get("kind") != VIRTUAL_MACHINE_KIND:
        return [invalid_value(f"{path}.kind", INVALID_KIND)]
    return []


def check_spec_unchanged(new: dict[str, Any], old: dict[str, Any] | None) -> list[StatusCause]:
    """``spec in immutable after creation`` at ``spec`` when an UPDATE changes the spec."""
    if old is not None and (old.get("spec") or {}) != (new.get("spec") or {}):
        return [invalid_value("spec", SPEC_IMMUTABLE)]
    return []


def check_failure_deadline(spec: dict[str, Any]) -> list[StatusCause]:
    """A ``FieldValueInvalid`` cause at ``spec.failureDeadline`` when it is not a Go duration
    (Go's ``time: invalid duration ...`` text) or is negative."""
    deadline = spec.get("failureDeadline")
    if deadline is None:
        return []
    text = str(deadline)
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        seconds = parse_go_duration(text)
    except DurationError as err:
        return [invalid_value("spec.failureDeadline", f"Invalid value: {quoted}: {err}")]
    if seconds < 0:
        return [invalid_value("spec.failureDeadline", f"Invalid value: {quoted}: must be a non-negative duration")]
    return []


def check_deletion_policy(spec: dict[str, Any]) -> list[StatusCause]:
    """kube-apiserver's enum refusal of a ``spec.deletionPolicy`` other than Delete/Retain."""
    policy = spec.get("deletionPolicy")
    if policy is None or policy in set(DeletionPolicy):
        return []
    return [not_supported("spec.deletionPolicy", unsupported_message(policy, [str(p) for p in DeletionPolicy]))]


def admit_snapshot(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """The causes refusing ``obj`` (a decoded VirtualMachineSnapshot) for ``ctx.operation``."""
    spec = obj.get("spec") or {}
    causes = check_failure_deadline(spec) + check_deletion_policy(spec)
    if ctx.is_create:
        return causes + check_source_reference(spec.get("source") or {}, "spec.source")
    return causes + check_spec_unchanged(obj, ctx.old)
