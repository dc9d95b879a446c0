"""Admission of VirtualMachineInstanceMigrations and MigrationPolicies: the object-only rules
(kubevirt-api.md §6.3 VMIM rules, §8).

Sources: KubeVirt ``pkg/virt-api/webhooks/mutating-webhook/mutators/migration-create-mutator.go``
(label ``kubevirt.io/vmi-name``, finalizer ``kubevirt.io/migrationJobFinalize``),
``validating-webhook/admitters/migration-create-admitter.go`` (``vmiName`` required, priority
only for virt-controller, decentralized fields behind their gate),
``migration-update-admitter.go`` (spec immutable, selector label kept while in flight) and
``migrationpolicy-admitter.go``. The rules that need other objects (the VMI exists, is not final,
is migratable, no other migration in flight) are :mod:`shared.admission.migration_create`,
run by virt-api, which has the store.
"""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import forbidden, invalid_value, not_supported, required
from shared.api.migration_vocabulary import MIGRATION_FINALIZER, VMI_NAME_LABEL, is_final_migration_phase
from shared.api.quantity import is_quantity, parse_quantity
from shared.errors import StatusCause

MAX_DOWNTIME_MS = range(1, 2_000_001)
DECENTRALIZED_GATE = "DecentralizedLiveMigration"

VMI_NAME_MISSING = "vmiName is missing"
PRIORITY_FORBIDDEN = "Migration priority queue, only virt-controller is allowed to set priority field"
SPEC_RESTRICTED = "update of Migration object's spec is restricted"
LABEL_REMOVED = "selector label can't be removed from an in-flight migration"
LABEL_MODIFIED = "selector label can't be modified on an in-flight migration"


def apply_migration_mutation(obj: dict[str, Any]) -> None:
    """KubeVirt's VMIM create mutator, in place: label ``kubevirt.io/vmi-name`` = ``spec.vmiName``
    (overwriting a client's value) and the finalizer ``kubevirt.io/migrationJobFinalize`` (once)."""
    metadata = obj.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    labels[VMI_NAME_LABEL] = (obj.get("spec") or {}).get("vmiName") or ""
    metadata["labels"] = labels
    finalizers = list(metadata.get("finalizers") or [])
    if MIGRATION_FINALIZER not in finalizers:
        finalizers.append(MIGRATION_FINALIZER)
    metadata["finalizers"] = finalizers


def compute_create_causes(spec: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """The object-only create rules: ``vmiName`` required (alone: KubeVirt stops there),
    ``priority`` only from KubeVirt itself (``ctx.trusted``), ``sendTo``/``receive`` only with
    the DecentralizedLiveMigration gate and with one migrationID."""
    if not spec.get("vmiName"):
        return [required("spec.vmiName", VMI_NAME_MISSING)]
    causes: list[StatusCause] = []
    if spec.get("priority") is not None and not ctx.trusted:
        causes.append(forbidden("spec.migrationPriority", PRIORITY_FORBIDDEN))
    send_to, receive = spec.get("sendTo"), spec.get("receive")
    if send_to is not None or receive is not None:
        if not ctx.cluster.is_enabled(DECENTRALIZED_GATE):
            causes.append(not_supported("", f"{DECENTRALIZED_GATE} feature gate is not enabled in kubevirt resource"))
        elif isinstance(send_to, dict) and isinstance(receive, dict) \
                and send_to.get("migrationID") != receive.get("migrationID"):
            causes.append(invalid_value("", f"sendTo migrationID {send_to.get('migrationID')} does not match "
                                            f"receive migrationID {receive.get('migrationID')}"))
    return causes


def compute_update_causes(new: dict[str, Any], old: dict[str, Any]) -> list[StatusCause]:
    """KubeVirt's update admitter: the spec never changes; while the migration is not final
    the ``kubevirt.io/vmi-name`` label may be neither removed nor changed."""
    if (new.get("spec") or {}) != (old.get("spec") or {}):
        return [not_supported("", SPEC_RESTRICTED)]
    phase = (new.get("status") or {}).get("phase")
    old_labels = (old.get("metadata") or {}).get("labels")
    if is_final_migration_phase(phase) or old_labels is None or VMI_NAME_LABEL not in old_labels:
        return []
    new_labels = (new.get("metadata") or {}).get("labels")
    if new_labels is None:
        return [not_supported("", LABEL_REMOVED)]
    if new_labels.get(VMI_NAME_LABEL) != old_labels[VMI_NAME_LABEL]:
        return [not_supported("", LABEL_MODIFIED)]
    return []


def admit_migration(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """CREATE: the mutator (:func:`apply_migration_mutation`) then :func:`compute_create_causes`;
    UPDATE: :func:`compute_update_causes` against ``ctx.old``."""
    if ctx.is_create:
        apply_migration_mutation(obj)
        return compute_create_causes(obj.get("spec") or {}, ctx)
    if ctx.old is None:
        return []
    return compute_update_causes(obj, ctx.old)


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
