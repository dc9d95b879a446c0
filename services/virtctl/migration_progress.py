"""What ``virtctl migrate --wait`` prints, as pure functions of the VMIM it follows.

The VMIM's ``status.phase`` (KubeVirt's phases), ``status.migrationState`` (virt-migration's
copy of the VMI's) and its ``progress`` (a kubevirt-py extension: the source virt-handler's
samples of libvirt's job statistics — bytes, bytes per second, the memory iteration, and at the
end QEMU's measured downtime in ms) become: a line per phase change, a progress line (or the
fields of a progress bar on a terminal), and one closing line — success with the nodes, the
downtime and the total time, or the failure as one readable sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.api.migration_vocabulary import MigrationAbortStatus, MigrationPhase

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(value: int | float | None) -> str:
    """Binary units with one decimal: ``format_bytes(268435456) == "256.0 MiB"``; "?" for None."""
    if value is None:
        return "?"
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_rate(value: int | float | None) -> str:
    """Bytes per second: ``"95.3 MiB/s"``; "?" for None."""
    return "?" if value is None else f"{format_bytes(value)}/s"


def format_seconds(seconds: float) -> str:
    """``0.8s``, ``12.3s``, ``2m05s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def state_of(vmim: dict[str, Any]) -> dict[str, Any]:
    """``status.migrationState`` of ``vmim`` ({} when unset)."""
    return ((vmim.get("status") or {}).get("migrationState")) or {}


def progress_of(vmim: dict[str, Any]) -> dict[str, Any]:
    """``status.migrationState.progress`` of ``vmim`` ({} when unset)."""
    return state_of(vmim).get("progress") or {}


def phase_of(vmim: dict[str, Any]) -> str:
    """``status.phase`` ("" while unset)."""
    return (vmim.get("status") or {}).get("phase") or ""


def compute_phase_line(phase: str, elapsed: float) -> str:
    """``"  Scheduling           +0.4s"``: a phase reached, seconds since the command sent the request."""
    return f"  {phase or 'Created':<20} +{format_seconds(elapsed)}"


def compute_progress_detail(progress: dict[str, Any]) -> str | None:
    """``"256.0 MiB of 1.0 GiB transferred, 12.0 MiB remaining, iteration 2, 95.3 MiB/s"`` from a
    progress sample (None when it has no transfer figure yet). Parts the sample lacks are left out."""
    processed = progress.get("dataProcessedBytes")
    if processed is None:
        return None
    total = progress.get("dataTotalBytes")
    parts = [f"{format_bytes(processed)} of {format_bytes(total)} transferred" if total
             else f"{format_bytes(processed)} transferred"]
    if progress.get("dataRemainingBytes") is not None:
        parts.append(f"{format_bytes(progress['dataRemainingBytes'])} remaining")
    if progress.get("memoryIteration") is not None:
        parts.append(f"iteration {progress['memoryIteration']}")
    if progress.get("transferRateBytes") is not None:
        parts.append(format_rate(progress["transferRateBytes"]))
    if progress.get("dirtyMemoryRateBytes"):
        parts.append(f"dirtying {format_rate(progress['dirtyMemoryRateBytes'])}")
    return ", ".join(parts)


def compute_bar(progress: dict[str, Any]) -> tuple[int, int] | None:
    """``(done, total)`` bytes for a progress bar: processed over processed+remaining (libvirt's
    total grows while the guest dirties memory), else over dataTotalBytes; None without figures."""
    processed = progress.get("dataProcessedBytes")
    if processed is None:
        return None
    remaining = progress.get("dataRemainingBytes")
    total = processed + remaining if remaining is not None else progress.get("dataTotalBytes")
    if not total:
        return None
    return int(processed), int(max(total, processed))


@dataclass(frozen=True)
class Outcome:
    """How a followed migration ended: ``ok`` and the closing line (the error text when not ok)."""

    ok: bool
    message: str


def compute_outcome(vmim: dict[str, Any], elapsed: float) -> Outcome | None:
    """The closing line once ``vmim`` is final (None before): on success the nodes, QEMU's
    downtime and the total time; on failure the failure reason, or that it was cancelled."""
    name = (vmim.get("metadata") or {}).get("name") or "?"
    phase = phase_of(vmim)
    state = state_of(vmim)
    if phase == MigrationPhase.SUCCEEDED:
        downtime = progress_of(vmim).get("downtimeMs")
        moved = ""
        if state.get("sourceNode") and state.get("targetNode"):
            moved = f" from {state['sourceNode']} to {state['targetNode']}"
        shown = f"{downtime} ms" if downtime is not None else "not reported"
        return Outcome(True, f"Migration {name} succeeded{moved}: downtime {shown} (QEMU-reported), "
                             f"total {format_seconds(elapsed)}")
    if phase == MigrationPhase.FAILED:
        if state.get("abortStatus") == MigrationAbortStatus.SUCCEEDED or _abort_requested(vmim):
            return Outcome(False, f"migration {name} was cancelled after {format_seconds(elapsed)}")
        reason = state.get("failureReason") or _last_condition_message(vmim) or "no reason given"
        return Outcome(False, f"migration {name} failed: {reason}")
    return None


def _abort_requested(vmim: dict[str, Any]) -> bool:
    conditions = (vmim.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "migrationAbortRequested" and c.get("status") == "True" for c in conditions)


def _last_condition_message(vmim: dict[str, Any]) -> str | None:
    conditions = (vmim.get("status") or {}).get("conditions") or []
    messages = [c.get("message") for c in conditions if c.get("message")]
    return messages[-1] if messages else None


@dataclass(frozen=True)
class FollowState:
    """What the follower has shown: the last phase and the last progress detail."""

    phase: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class FollowStep:
    """What to show for one observed VMIM: new phase lines, a new progress detail (None: no change)
    and the bar figures; ``state`` is the follower's state after it."""

    state: FollowState
    phase_lines: tuple[str, ...]
    detail: str | None
    bar: tuple[int, int] | None


def compute_follow_step(state: FollowState, vmim: dict[str, Any], elapsed: float) -> FollowStep:
    """One step of following: print a phase line when the phase changed, a progress detail when
    the sample changed."""
    phase = phase_of(vmim)
    lines = (compute_phase_line(phase, elapsed),) if phase != state.phase else ()
    progress = progress_of(vmim)
    detail = compute_progress_detail(progress)
    new_detail = detail if detail is not None and detail != state.detail else None
    return FollowStep(FollowState(phase, detail if detail is not None else state.detail), lines, new_detail,
                      compute_bar(progress))
