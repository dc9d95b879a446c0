"""Rules over the VMIMs of one VMI (pure): which came first, garbage collection, evacuation
backoff.

- order: by ``creationTimestamp``, then name (KubeVirt's ``vmimCollection`` sorts by creation);
- one migration per VMI: a VMIM fails when a non-final VMIM of the same VMI was created before it;
- garbage collection (KubeVirt ``garbageCollectFinalizedMigrations``): of the final VMIMs not
  being deleted, all but the newest :data:`KEEP_FINALIZED_MIGRATIONS_PER_VMI` are deleted,
  oldest first;
- evacuation backoff (KubeVirt ``handleMigrationBackoff``): the newest evacuation VMIM of a VMI
  waits 20 s after the previous evacuation VMIM failed, doubled for every further consecutive
  failure (counting back to the last success; VMIMs being deleted skipped).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from services.virt_migration.phase_decision import is_deleting, phase_entered_at, phase_of, uid_of
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migration_vocabulary import (
    EVACUATION_ANNOTATION,
    KEEP_FINALIZED_MIGRATIONS_PER_VMI,
    MigrationPhase,
    is_final_migration_phase,
)
from shared.api.vocabulary import object_key

#: First evacuation backoff (KubeVirt: 20 s, doubling).
BACKOFF_BASE_SECONDS = 20.0


def vmi_key_of(vmim: VirtualMachineInstanceMigration) -> str:
    """``namespace/vmiName`` of the VMI ``vmim`` moves."""
    namespace = vmim.metadata.namespace if vmim.metadata is not None else None
    return object_key(namespace, vmim.spec.vmi_name or "")


def creation_order(vmim: VirtualMachineInstanceMigration) -> tuple[str, str]:
    """Sort key: (creationTimestamp, name)."""
    meta = vmim.metadata
    return ((meta.creation_timestamp or "") if meta else "", (meta.name or "") if meta else "")


def has_earlier_active(vmim: VirtualMachineInstanceMigration,
                       siblings: Iterable[VirtualMachineInstanceMigration]) -> bool:
    """Whether another non-final VMIM of the same VMI was created before ``vmim``."""
    mine = creation_order(vmim)
    uid = uid_of(vmim)
    return any(uid_of(other) != uid and not is_final_migration_phase(phase_of(other))
               and creation_order(other) < mine for other in siblings)


def compute_garbage(siblings: Iterable[VirtualMachineInstanceMigration],
                    keep: int = KEEP_FINALIZED_MIGRATIONS_PER_VMI) -> list[VirtualMachineInstanceMigration]:
    """The final VMIMs of one VMI to delete (oldest first), keeping the newest ``keep``."""
    finalized = sorted((m for m in siblings if is_final_migration_phase(phase_of(m)) and not is_deleting(m)),
                       key=creation_order)
    return finalized[:max(len(finalized) - keep, 0)]


def is_evacuation(vmim: VirtualMachineInstanceMigration) -> bool:
    """Whether ``vmim`` was created to evacuate a node (annotation ``kubevirt.io/evacuationMigration``)."""
    return vmim.metadata is not None and EVACUATION_ANNOTATION in (vmim.metadata.annotations or {})


def compute_backoff_until(vmim: VirtualMachineInstanceMigration,
                          siblings: Iterable[VirtualMachineInstanceMigration]) -> datetime | None:
    """When evacuation VMIM ``vmim`` may start (None: no backoff). ``siblings``: the VMI's VMIMs
    (``vmim`` among them or not)."""
    if not is_evacuation(vmim):
        return None
    uid = uid_of(vmim)
    eligible = [m for m in siblings if is_evacuation(m) and uid_of(m) != uid]
    older = sorted((m for m in eligible if creation_order(m) <= creation_order(vmim)), key=creation_order,
                   reverse=True)
    if len(eligible) != len(older) or not older:  # not the newest evacuation VMIM, or the first one
        return None
    backoff = 0.0
    for previous in older:
        phase = phase_of(previous)
        if phase == MigrationPhase.SUCCEEDED:
            break
        if is_deleting(previous):
            continue
        if phase == MigrationPhase.FAILED:
            backoff = BACKOFF_BASE_SECONDS if backoff == 0 else backoff * 2
    if backoff == 0:
        return None
    failed_at = phase_entered_at(older[0], MigrationPhase.FAILED)
    if failed_at is None:
        return None
    return failed_at + timedelta(seconds=backoff)
