"""Admission of VirtualMachineInstanceMigrations and MigrationPolicies (kubevirt-api.md §6.3
VMIM rules, §8; KubeVirt migration-create-admitter.go, vmim mutator).

Rules that need other objects (the VMI exists, is not final, is migratable, no other
migration in flight) are checked by the API server, which has the store; these are the
object-only rules."""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import forbidden, invalid_value, required
from shared.api.quantity import is_quantity, parse_quantity
from shared.errors import StatusCause

VMI_NAME_LABEL = "kubevirt.io/vmi-name"
MAX_DOWNTIME_MS = range(1, 2_000_001)


def admit_migration(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """``spec.vmiName`` is required; ``priority`` is for KubeVirt only; decentralized
    ``sendTo``/``receive`` need their gate. On CREATE the VMIM gets the
    ``kubevirt.io/vmi-name`` label (the VMIM mutator)."""
    spec = obj["spec"]
    causes: list[StatusCause] = []
    if not spec.get("vmiName"):
        causes.append(
            required("spec.vmiName", "vmiName is missing: set spec.vmiName to the name of the VMI to migrate")
        )
    if spec.get("priority") is not None and not ctx.trusted:
        causes.append(forbidden("spec.priority", "spec.priority can only be set by KubeVirt"))
    for key in ("sendTo", "receive"):
        if spec.get(key) is not None and not ctx.cluster.is_enabled("DecentralizedLiveMigration"):
            causes.append(forbidden(f"spec.{key}", f"spec.{key} needs the DecentralizedLiveMigration feature gate"))
    if ctx.old is not None and not ctx.is_create and not ctx.trusted:
        old_spec = ctx.old.get("spec") or {}
        if old_spec.get("vmiName") != spec.get("vmiName"):
            causes.append(forbidden("spec.vmiName", "spec.vmiName cannot be changed"))
    if not causes and ctx.is_create:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault(VMI_NAME_LABEL, spec["vmiName"])
    return causes


def admit_migration_policy(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """``bandwidthPerMigration`` a non-negative quantity, ``completionTimeoutPerGiB`` >= 0,
    ``maxDowntimeMs`` in 1..2000000 (KubeVirt migration-policy-admitter.go)."""
    spec = obj["spec"]
    causes: list[StatusCause] = []
    bandwidth = spec.get("bandwidthPerMigration")
    if bandwidth is not None:
        if not is_quantity(bandwidth):
            causes.append(invalid_value("spec.bandwidthPerMigration", f"{bandwidth!r} is not a quantity"))
        elif parse_quantity(bandwidth) < 0:
            causes.append(invalid_value("spec.bandwidthPerMigration", "must not be negative"))
    timeout = spec.get("completionTimeoutPerGiB")
    if timeout is not None and timeout < 0:
        causes.append(invalid_value("spec.completionTimeoutPerGiB", "must not be negative"))
    downtime = spec.get("maxDowntimeMs")
    if downtime is not None and downtime not in MAX_DOWNTIME_MS:
        causes.append(invalid_value("spec.maxDowntimeMs", "must be between 1 and 2000000"))
    return causes
