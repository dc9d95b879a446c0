"""What ``virtctl migrate --wait`` prints, as pure functions of the VMIM it follows.

The VMIM's ``status.phase`` (KubeVirt's phases), ``status.migrationState`` (virt-migration's
copy of the VMI's) and its ``progress`` (a kubevirt-py extension: the source virt-handler's
samples of libvirt's job statistics — bytes, bytes per second, the memory iteration, and at the
end QEMU's measured downtime in ms) become: a line per phase reached (every entry of
``status.phaseTransitionTimestamps``, also those reached before the follower first saw the
object, with its time since the VMIM's ``metadata.creationTimestamp``), a progress line (or the
fields of a progress bar on a terminal) while the migration has not ended, and one closing line
— success with the nodes, the downtime and the total time, or the failure as one readable
sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.api.migration_vocabulary import MigrationAbortStatus, MigrationPhase, is_final_migration_phase
from shared.api.vocabulary import parse_time

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
    """``"  Scheduling           +0.4s"``: a phase reached, ``elapsed`` seconds after the VMIM was created."""
    return f"  {phase:<20} +{format_seconds(max(elapsed, 0.0))}"


def _time(text: Any) -> datetime | None:
    try:
        return parse_time(text) if isinstance(text, str) else None
    except ValueError:
        return None


def compute_elapsed(vmim: dict[str, Any], moment: datetime) -> float:
    """Seconds from the VMIM's ``metadata.creationTimestamp`` to ``moment`` (0 without one).
    creationTimestamp has whole seconds (as Kubernetes stores it), so this may exceed the true
    figure by up to a second."""
    created = _time((vmim.get("metadata") or {}).get("creationTimestamp"))
    return (moment - created).total_seconds() if created is not None else 0.0


def compute_total_seconds(vmim: dict[str, Any], now: datetime) -> float:
    """The closing line's total: creation to the time of the last phase reached (``now`` when
    ``phaseTransitionTimestamps`` has none)."""
    times = compute_phase_times(vmim, now)
    return times[-1][1] if times else compute_elapsed(vmim, now)


def compute_phase_times(vmim: dict[str, Any], now: datetime) -> list[tuple[str, float]]:
    """(phase, seconds since creation) for each phase the VMIM reached, in order: its
    ``status.phaseTransitionTimestamps``, then its current phase at ``now`` if no entry names it
    yet. The unset phase ("") is no phase reached."""
    status = vmim.get("status") or {}
    stamped: list[tuple[datetime, str]] = []
    for entry in status.get("phaseTransitionTimestamps") or []:
        moment = _time((entry or {}).get("phaseTransitionTimestamp"))
        if (entry or {}).get("phase") and moment is not None:
            stamped.append((moment, entry["phase"]))
    stamped.sort(key=lambda item: item[0])
    times = [(phase, compute_elapsed(vmim, moment)) for moment, phase in stamped]
    phase = phase_of(vmim)
    if phase and phase not in {p for p, _ in times}:
        times.append((phase, compute_elapsed(vmim, now)))
    return times


def compute_progress_detail(progress: dict[str, Any]) -> str | None:
    """``"256.0 MiB of 1.0 GiB transferred, 12.0 MiB remaining, iteration 2, 95.3 MiB/s"`` from a
    progress sample (None when it has no transfer figure yet). Parts the sample lacks are left out.
    With block migration the line starts ``copying disks`` (the disk figures, before QEMU moves
    memory: no ``memoryIteration`` yet) or ``memory and disks`` (libvirt's data figures count both)."""
    processed = progress.get("dataProcessedBytes")
    if processed is None:
        return None
    total = progress.get("dataTotalBytes")
    copying_disks = progress.get("memoryIteration") is None and bool(progress.get("diskTotalBytes"))
    parts = ["copying disks" if copying_disks else "memory and disks"] if progress.get("diskTotalBytes") else []
    if copying_disks:  # block migration copies the local disks first; memory figures come after
        processed, total = progress.get("diskProcessedBytes", processed), progress["diskTotalBytes"]
        progress = {**progress, "dataRemainingBytes": progress.get("diskRemainingBytes")}
    parts.append(f"{format_bytes(processed)} of {format_bytes(total)} transferred" if total
                 else f"{format_bytes(processed)} transferred")
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
    """What the follower has shown: the phases printed and the last progress detail."""

    phases: frozenset[str] = frozenset()
    detail: str | None = None


@dataclass(frozen=True)
class FollowStep:
    """What to show for one observed VMIM, in this order: new phase lines, then a new progress
    detail (None: no change; never once the migration has ended) and the bar figures; ``state``
    is the follower's state after it."""

    state: FollowState
    phase_lines: tuple[str, ...]
    detail: str | None
    bar: tuple[int, int] | None


def compute_follow_step(state: FollowState, vmim: dict[str, Any], now: datetime) -> FollowStep:
    """One step of following ``vmim`` at wall-clock ``now``: a line for each phase reached and
    not yet printed (from ``phaseTransitionTimestamps``, so phases passed before the first look
    are listed too), then the progress detail when the sample changed and the migration has not
    ended (a final sample would follow the line that ends it)."""
    lines = tuple(compute_phase_line(phase, elapsed) for phase, elapsed in compute_phase_times(vmim, now)
                  if phase not in state.phases)
    phases = state.phases | {phase for phase, _ in compute_phase_times(vmim, now)}
    if is_final_migration_phase(phase_of(vmim)):
        return FollowStep(FollowState(phases, state.detail), lines, None, None)
    progress = progress_of(vmim)
    detail = compute_progress_detail(progress)
    new_detail = detail if detail is not None and detail != state.detail else None
    return FollowStep(FollowState(phases, detail if detail is not None else state.detail), lines, new_detail,
                      compute_bar(progress))
