"""Admission of VirtualMachineSnapshots (KubeVirt ``pkg/storage/admitters/vmsnapshot.go``).

CREATE: ``spec.source.apiGroup`` must be given (``missing apiGroup``, FieldValueNotFound) and be
``kubevirt.io`` (``invalid apiGroup``), ``spec.source.kind`` must be ``VirtualMachine``
(``invalid kind``). UPDATE: ``spec`` may not change (``spec in immutable after creation`` -
KubeVirt's spelling). On both, ``spec.failureDeadline`` must be a Go duration: KubeVirt's webhook
fails to decode the object otherwise and answers a generic 400 with Go's parse error.
"""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import invalid_value, not_found
from shared.admission.go_duration import DurationError, parse_go_duration
from shared.errors import ApiError, StatusCause

SNAPSHOT_WEBHOOK = "virtualmachinesnapshot-validator.snapshot.kubevirt.io"
RESTORE_WEBHOOK = "virtualmachinerestore-validator.snapshot.kubevirt.io"
CORE_GROUP = "kubevirt.io"
VIRTUAL_MACHINE_KIND = "VirtualMachine"
MISSING_API_GROUP = "missing apiGroup"
INVALID_API_GROUP = "invalid apiGroup"
INVALID_KIND = "invalid kind"
SPEC_IMMUTABLE = "spec in immutable after creation"


def webhook_denied(webhook: str, message: str) -> ApiError:
    """A generic webhook refusal (KubeVirt ``ToAdmissionResponseError``): HTTP 400, no reason,
    message ``admission webhook "<webhook>" denied the request: <message>``."""
    return ApiError(f'admission webhook "{webhook}" denied the request: {message}', code=400, reason="")


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


def check_failure_deadline(spec: dict[str, Any]) -> None:
    """Raise KubeVirt's 400 (Go's ``time: invalid duration ...``) for a ``failureDeadline``
    that is not a Go duration."""
    deadline = spec.get("failureDeadline")
    if deadline is None:
        return
    try:
        parse_go_duration(str(deadline))
    except DurationError as err:
        raise webhook_denied(SNAPSHOT_WEBHOOK, str(err)) from None


def admit_snapshot(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """The causes refusing ``obj`` (a decoded VirtualMachineSnapshot) for ``ctx.operation``;
    raises the generic 400 of :func:`check_failure_deadline`."""
    spec = obj.get("spec") or {}
    check_failure_deadline(spec)
    if ctx.is_create:
        return check_source_reference(spec.get("source") or {}, "spec.source")
    return check_spec_unchanged(obj, ctx.old)
