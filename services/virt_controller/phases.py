"""Facts about a VMI read from its phase and metadata (pure predicates on the typed objects).

The meaning of "final", "unprocessed" and "migrating" follows KubeVirt's
``VirtualMachineInstance`` helpers (``staging/src/kubevirt.io/api/core/v1/types.go``:
``IsFinal``, ``IsUnprocessed``, ``IsMarkedForDeletion``) and ``pkg/util/migrations.IsMigrating``.
Phase names are :class:`shared.api.vocabulary.Phase`.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from shared.api.meta import ObjectMeta
from shared.api.migration import PhaseTransitionTimestamp
from shared.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from shared.api.vocabulary import Phase, is_final_phase

__all__ = [
    "failed_early",
    "is_final",
    "is_marked_for_deletion",
    "is_migrating",
    "is_unprocessed",
    "phase_of",
    "was_running",
    "with_phase",
]


class _HasMetadata(Protocol):
    @property
    def metadata(self) -> ObjectMeta | None: ...


def phase_of(vmi: VirtualMachineInstance | None) -> str:
    """The VMI's ``status.phase`` ("" when unset or when there is no VMI)."""
    if vmi is None or vmi.status is None:
        return ""
    return vmi.status.phase or ""


def is_final(vmi: VirtualMachineInstance | None) -> bool:
    """Succeeded or Failed: the VMI will never run again."""
    return is_final_phase(phase_of(vmi))


def is_unprocessed(vmi: VirtualMachineInstance | None) -> bool:
    """Phase unset or Pending: no controller has acted on the VMI yet."""
    return vmi is not None and phase_of(vmi) in ("", Phase.PENDING)


def is_marked_for_deletion(obj: _HasMetadata | None) -> bool:
    """``metadata.deletionTimestamp`` is set (any object with metadata)."""
    return obj is not None and obj.metadata is not None and bool(obj.metadata.deletion_timestamp)


def is_migrating(vmi: VirtualMachineInstance | None) -> bool:
    """A migration started and has not ended (``status.migrationState``)."""
    state = vmi.status.migration_state if vmi is not None and vmi.status is not None else None
    if state is None:
        return False
    return bool(state.start_timestamp) and not state.end_timestamp and not state.completed \
        and not state.failed


def was_running(vmi: VirtualMachineInstance | None) -> bool:
    """The VMI reached Running at some point (it has a Running phase transition timestamp)."""
    if vmi is None or vmi.status is None:
        return False
    stamps = vmi.status.phase_transition_timestamps or []
    return any(entry.phase == Phase.RUNNING for entry in stamps) or phase_of(vmi) == Phase.RUNNING


def failed_early(vmi: VirtualMachineInstance | None) -> bool:
    """Final without ever reaching Running: a start failure in KubeVirt's crash-loop sense."""
    return is_final(vmi) and not was_running(vmi)


def with_phase(status: VirtualMachineInstanceStatus, phase: Phase,
               timestamp: str) -> VirtualMachineInstanceStatus:
    """A copy of ``status`` in ``phase`` with the transition recorded.

    ``phaseTransitionTimestamps`` gains ``{phase, phaseTransitionTimestamp}`` only when the phase
    actually changes (KubeVirt appends one entry per transition); an unchanged phase returns
    ``status`` itself.
    """
    if status.phase == phase:
        return status
    stamps = list(status.phase_transition_timestamps or [])
    stamps.append(PhaseTransitionTimestamp(phase=phase, phase_transition_timestamp=timestamp))
    return msgspec.structs.replace(status, phase=phase, phase_transition_timestamps=stamps)
