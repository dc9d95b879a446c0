"""Facts about a VMI read from its phase and metadata (pure predicates on plain dicts).

Phase names and the meaning of "final", "unprocessed" and "migrating" follow KubeVirt's
``VirtualMachineInstance`` helpers (``staging/src/kubevirt.io/api/core/v1/types.go``:
``IsFinal``, ``IsUnprocessed``, ``IsScheduling``, ``IsScheduled``, ``IsRunning``,
``IsMarkedForDeletion``) and ``pkg/util/migrations.IsMigrating``.
"""

from __future__ import annotations

from typing import Any

PENDING = "Pending"
SCHEDULING = "Scheduling"
SCHEDULED = "Scheduled"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
UNKNOWN = "Unknown"
WAITING_FOR_SYNC = "WaitingForSync"

FINAL_PHASES = frozenset({SUCCEEDED, FAILED})


def phase_of(vmi: dict[str, Any] | None) -> str:
    """The VMI's ``status.phase`` ("" when unset or when there is no VMI)."""
    if not vmi:
        return ""
    return (vmi.get("status") or {}).get("phase") or ""


def is_final(vmi: dict[str, Any] | None) -> bool:
    """Succeeded or Failed: the VMI will never run again."""
    return phase_of(vmi) in FINAL_PHASES


def is_unprocessed(vmi: dict[str, Any] | None) -> bool:
    """Phase unset or Pending: no controller has acted on the VMI yet."""
    return vmi is not None and phase_of(vmi) in ("", PENDING)


def is_marked_for_deletion(obj: dict[str, Any] | None) -> bool:
    """``metadata.deletionTimestamp`` is set."""
    return bool(obj and (obj.get("metadata") or {}).get("deletionTimestamp"))


def is_migrating(vmi: dict[str, Any] | None) -> bool:
    """A migration started and has not ended (``status.migrationState``)."""
    state = ((vmi or {}).get("status") or {}).get("migrationState") or {}
    return bool(state.get("startTimestamp")) and not state.get("endTimestamp") \
        and not state.get("completed") and not state.get("failed")


def was_running(vmi: dict[str, Any] | None) -> bool:
    """The VMI reached Running at some point (it has a Running phase transition timestamp)."""
    stamps = ((vmi or {}).get("status") or {}).get("phaseTransitionTimestamps") or []
    return any(entry.get("phase") == RUNNING for entry in stamps) or phase_of(vmi) == RUNNING


def failed_early(vmi: dict[str, Any] | None) -> bool:
    """Final without ever reaching Running: a start failure in KubeVirt's crash-loop sense."""
    return is_final(vmi) and not was_running(vmi)


def with_phase(status: dict[str, Any], phase: str, timestamp: str) -> dict[str, Any]:
    """A copy of ``status`` in ``phase`` with the transition recorded.

    ``phaseTransitionTimestamps`` gains ``{phase, phaseTransitionTimestamp}`` only when the phase
    actually changes (KubeVirt appends one entry per transition).
    """
    new = dict(status)
    if new.get("phase") == phase:
        return new
    new["phase"] = phase
    stamps = list(new.get("phaseTransitionTimestamps") or [])
    stamps.append({"phase": phase, "phaseTransitionTimestamp": timestamp})
    new["phaseTransitionTimestamps"] = stamps
    return new
