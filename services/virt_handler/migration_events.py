"""The Kubernetes Events a virt-handler records about a VMI during a live migration (pure).

KubeVirt's virt-handler records them on the VMI (``pkg/virt-handler/migration-source.go``,
``migration-target.go``, messages from ``controller.go``); the same reasons, types and messages
are used here:

- target, its domain and files prepared: Normal ``PreparingTarget``
  "VirtualMachineInstance Migration Target Prepared.";
- source, the transfer starts: Normal ``Migrating`` "VirtualMachineInstance is migrating.";
- source, an abort is sent to the running transfer: Normal ``Migrating``
  "VirtualMachineInstance is aborting migration.";
- source, the migration failed: Warning ``Migrated``
  "VirtualMachineInstance migration uid <uid> failed. reason:<failureReason>";
- target, after the hand-over: Normal ``Migrated`` "The VirtualMachineInstance migrated to node <node>.".

KubeVirt's "Migration Target is listening at <address>, on ports: <ports>" is not recorded: the
target's libvirtd picks the data port, so the handler knows no ports to name.

The Events follow from a transition this handler wrote (:func:`compute_migration_events` compares
the VMI before and after its own compare-and-swap), so each is recorded once per migration: a
retried sync or a restarted handler finds the field already written and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.api.migration_vocabulary import MigrationAbortStatus
from shared.api.vocabulary import EventType

MIGRATING = "Migrating"
PREPARING_TARGET = "PreparingTarget"
MIGRATED = "Migrated"

VMI_MIGRATING = "VirtualMachineInstance is migrating."
VMI_ABORTING_MIGRATION = "VirtualMachineInstance is aborting migration."
VMI_MIGRATION_TARGET_PREPARED = "VirtualMachineInstance Migration Target Prepared."


@dataclass(frozen=True)
class MigrationEvent:
    """One Event to record about the VMI: ``type`` Normal|Warning, ``reason``, ``message``."""

    type: str
    reason: str
    message: str


def compute_migrated_message(node_name: str) -> str:
    """The target's ``Migrated`` message after the hand-over (KubeVirt's wording)."""
    return f"The VirtualMachineInstance migrated to node {node_name}."


def compute_failed_message(migration_uid: str, reason: str) -> str:
    """The ``Migrated`` Warning message of a failed migration (KubeVirt's wording, no space
    after ``reason:``)."""
    return f"VirtualMachineInstance migration uid {migration_uid} failed. reason:{reason}"


def _state(vmi: dict[str, Any] | None) -> dict[str, Any]:
    return dict(((vmi or {}).get("status") or {}).get("migrationState") or {})


def compute_migration_events(before: dict[str, Any] | None, after: dict[str, Any] | None,
                             node_name: str) -> list[MigrationEvent]:
    """The Events this handler (on ``node_name``) records for its own write that turned the VMI
    ``before`` into ``after`` (both whole VMI dicts; None: no VMI). Only fields of the migration in
    ``after`` count (``before``'s state of another migration is treated as empty); order: prepared,
    migrating, aborting, failed, migrated. Empty when nothing the Events describe changed."""
    ms = _state(after)
    uid = ms.get("migrationUid")
    if not uid:
        return []
    old = _state(before)
    if old.get("migrationUid") != uid:
        old = {}
    events: list[MigrationEvent] = []
    if ms.get("targetNode") == node_name and ms.get("targetNodeAddress") and not old.get("targetNodeAddress"):
        events.append(MigrationEvent(EventType.NORMAL, PREPARING_TARGET, VMI_MIGRATION_TARGET_PREPARED))
    if ms.get("sourceNode") == node_name and ms.get("startTimestamp") and not old.get("startTimestamp"):
        events.append(MigrationEvent(EventType.NORMAL, MIGRATING, VMI_MIGRATING))
    aborting = MigrationAbortStatus.ABORTING
    if ms.get("abortStatus") == aborting and old.get("abortStatus") != aborting:
        events.append(MigrationEvent(EventType.NORMAL, MIGRATING, VMI_ABORTING_MIGRATION))
    if ms.get("failed") and not old.get("failed"):
        events.append(MigrationEvent(EventType.WARNING, MIGRATED,
                                     compute_failed_message(uid, ms.get("failureReason") or "")))
    node_before = ((before or {}).get("status") or {}).get("nodeName")
    node_after = ((after or {}).get("status") or {}).get("nodeName")
    if node_after == node_name != node_before and ms.get("targetNode") == node_name and ms.get("completed") \
            and not ms.get("failed"):
        events.append(MigrationEvent(EventType.NORMAL, MIGRATED, compute_migrated_message(node_name)))
    return events
