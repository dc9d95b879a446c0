"""What the snapshot controller does with one VirtualMachineSnapshot (pure).

KubeVirt ``pkg/storage/snapshot/snapshot.go`` updateVMSnapshot / updateSnapshotStatus and
``util.go``: finalizer, lock of the source (``status.snapshotInProgress`` + the source
finalizer), content creation, the phase (Failed at the deadline, Succeeded once the content has a
creationTime, else InProgress / Deleting), conditions Progressing / Ready / Failure with KubeVirt's
reasons, deletion of the content (Delete policy, or a content that is not ready), unlock.
Differences (snapshot-design.md): the source stays locked until the content is ready (or has
failed), not merely created; a retained content loses its owner reference; a snapshot turning
Failed thaws an online source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from msgspec.structs import replace

from services.virt_snapshot.indications import SourceState, compute_indications, compute_source_indications
from shared.admission import go_duration
from shared.api.meta import Condition, has_finalizer
from shared.api.snapshot import (
    SnapshotError,
    SnapshotVolumesLists,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotContent,
    VirtualMachineSnapshotStatus,
)
from shared.api.snapshot_vocabulary import (
    DEFAULT_FAILURE_DEADLINE_SECONDS,
    SNAPSHOT_DEADLINE_EXCEEDED,
    SNAPSHOT_FINALIZER,
    SNAPSHOT_SOURCE_FINALIZER,
    SOURCE_LOCKED_MESSAGE,
    SOURCE_NOT_LOCKED_MESSAGE,
    DeletionPolicy,
    SnapshotConditionType,
    SnapshotPhase,
    snapshot_content_name,
)
from shared.api.vm import VirtualMachine
from shared.api.vocabulary import format_time, parse_time

#: seconds between attempts to lock a busy source (KubeVirt snapshotRetryInterval)
SNAPSHOT_RETRY_INTERVAL = 5.0
SOURCE_DOES_NOT_EXIST = "Source does not exist"
OPERATION_FAILED = "Operation failed"
OPERATION_COMPLETE = "Operation complete"
SNAPSHOT_DELETING = "VM snapshot is deleting"
READY = "Ready"
NOT_READY = "Not ready"
IN_ERROR_STATE = "In error state"

def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string (``5m``, ``1h30m``, ``0s``, ``1.5s``), read by
    :func:`shared.admission.go_duration.parse_go_duration` (the parser virt-api's admission uses).
    Raises ValueError (``DurationError``, Go's message)."""
    return float(go_duration.parse_go_duration(text.strip()))


def failure_deadline_seconds(snapshot: VirtualMachineSnapshot) -> float:
    """``spec.failureDeadline`` in seconds (default 300; 0 = no deadline; unparsable = default)."""
    text = snapshot.spec.failure_deadline
    if not text:
        return float(DEFAULT_FAILURE_DEADLINE_SECONDS)
    try:
        return max(parse_go_duration(text), 0.0)
    except ValueError:
        return float(DEFAULT_FAILURE_DEADLINE_SECONDS)


def seconds_until_deadline(snapshot: VirtualMachineSnapshot, now: datetime) -> float | None:
    """Seconds left before the failure deadline (negative once passed), None without one."""
    deadline = failure_deadline_seconds(snapshot)
    created = parse_time(snapshot.metadata.creation_timestamp if snapshot.metadata else None)
    if deadline == 0 or created is None:
        return None
    return (created + timedelta(seconds=deadline) - now).total_seconds()


def phase_of(snapshot: VirtualMachineSnapshot) -> str:
    """``status.phase`` ("" when unset)."""
    return (snapshot.status.phase if snapshot.status else None) or ""


def is_progressing(snapshot: VirtualMachineSnapshot) -> bool:
    """Neither Failed nor Succeeded (KubeVirt vmSnapshotProgressing)."""
    return phase_of(snapshot) not in (SnapshotPhase.FAILED, SnapshotPhase.SUCCEEDED)


def is_deleting(snapshot: VirtualMachineSnapshot) -> bool:
    """The snapshot has a deletionTimestamp."""
    return snapshot.metadata is not None and snapshot.metadata.deletion_timestamp is not None


def deadline_exceeded(snapshot: VirtualMachineSnapshot, now: datetime) -> bool:
    """Failed already, or still progressing past the deadline (KubeVirt vmSnapshotDeadlineExceeded)."""
    if phase_of(snapshot) == SnapshotPhase.FAILED:
        return True
    if not is_progressing(snapshot):
        return False
    left = seconds_until_deadline(snapshot, now)
    return left is not None and left < 0


def is_terminating(snapshot: VirtualMachineSnapshot, now: datetime) -> bool:
    """Being deleted or past its deadline."""
    return is_deleting(snapshot) or deadline_exceeded(snapshot, now)


def content_ready(content: VirtualMachineSnapshotContent | None) -> bool:
    """The content's ``status.readyToUse`` is true."""
    return content is not None and content.status is not None and bool(content.status.ready_to_use)


def should_delete_content(snapshot: VirtualMachineSnapshot, content: VirtualMachineSnapshotContent) -> bool:
    """Delete policy (the default), or a content that is not ready (nothing worth keeping)."""
    policy = snapshot.spec.deletion_policy or DeletionPolicy.DELETE
    return policy == DeletionPolicy.DELETE or not content_ready(content)


def is_locked_by(vm: VirtualMachine | None, snapshot_name: str) -> bool:
    """The VM's ``status.snapshotInProgress`` names this snapshot and it has the source finalizer."""
    return (vm is not None and vm.status is not None and vm.status.snapshot_in_progress == snapshot_name
            and has_finalizer(vm.metadata, SNAPSHOT_SOURCE_FINALIZER))


def lock_refusal(vm: VirtualMachine, snapshot_name: str) -> str | None:
    """Why the VM cannot be locked for this snapshot now (KubeVirt's lock message), None if it can."""
    status = vm.status
    if status is not None and status.snapshot_in_progress and status.snapshot_in_progress != snapshot_name:
        return f'{SOURCE_NOT_LOCKED_MESSAGE} snapshot "{status.snapshot_in_progress}" in progress'
    if status is not None and status.restore_in_progress:
        return f'{SOURCE_NOT_LOCKED_MESSAGE} restore "{status.restore_in_progress}" in progress'
    return None


def set_condition(conditions: list[Condition], ctype: str, status: str, reason: str, now: str) -> list[Condition]:
    """``conditions`` with ``ctype`` set; the transition time changes only when status or reason
    does (KubeVirt util.go updateCondition)."""
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type == ctype:
            found = True
            if cond.status != status or cond.reason != reason:
                cond = Condition(type=ctype, status=status, reason=reason, last_transition_time=now)
        out.append(cond)
    if not found:
        out.append(Condition(type=ctype, status=status, reason=reason, last_transition_time=now))
    return out


@dataclass
class SnapshotPlan:
    """The writes of one reconcile, in this order: ``add_finalizer``, ``lock`` (VM status +
    source finalizer), ``create_content``, ``retain_content`` (drop the content's owner
    reference), ``delete_content``, ``unlock``, ``unfreeze`` (best effort), ``status`` (None:
    unchanged), ``remove_finalizer``; then requeue after ``requeue_after`` seconds (None: no)."""

    add_finalizer: bool = False
    lock: bool = False
    create_content: bool = False
    retain_content: bool = False
    delete_content: bool = False
    unlock: bool = False
    unfreeze: bool = False
    status: VirtualMachineSnapshotStatus | None = None
    remove_finalizer: bool = False
    requeue_after: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)


def _snapshot_volumes(content: VirtualMachineSnapshotContent | None,
                      state: SourceState | None) -> SnapshotVolumesLists | None:
    if content is not None:
        backups = {b.volume_name for b in content.spec.volume_backups or []}
        vm = content.spec.source.virtual_machine
        template = vm.spec.template if vm is not None and vm.spec is not None else None
        names = [v.name for v in ((template.spec.volumes if template and template.spec else None) or [])]
        included = [n for n in names if n in backups]
        excluded = [n for n in names if n not in backups]
    elif state is not None:
        included = [v.volume_name for v in state.included]
        excluded = list(state.excluded)
    else:
        return None
    return SnapshotVolumesLists(included_volumes=included or None, excluded_volumes=excluded or None)


def compute_status(snapshot: VirtualMachineSnapshot, vm: VirtualMachine | None, state: SourceState | None,
                   content: VirtualMachineSnapshotContent | None, locked: bool, lock_message: str,
                   now: datetime) -> VirtualMachineSnapshotStatus:
    """The snapshot's status after this reconcile (KubeVirt updateSnapshotStatus)."""
    stamp = format_time(now)
    status = snapshot.status or VirtualMachineSnapshotStatus(ready_to_use=False)
    uid = snapshot.metadata.uid if snapshot.metadata else None
    if vm is not None and vm.metadata is not None:
        status = replace(status, source_uid=vm.metadata.uid)
    if status.virtual_machine_snapshot_content_name is None and uid:
        status = replace(status, virtual_machine_snapshot_content_name=snapshot_content_name(uid))
    if content is not None and content.status is not None:
        status = replace(status, creation_time=content.status.creation_time,
                         ready_to_use=content.status.ready_to_use, error=content.status.error)
    conditions = list(status.conditions or [])
    if deadline_exceeded(replace(snapshot, status=status), now):
        previous = snapshot.status.error if snapshot.status else None
        error = previous if previous is not None and previous.message == SNAPSHOT_DEADLINE_EXCEEDED else \
            SnapshotError(time=stamp, message=SNAPSHOT_DEADLINE_EXCEEDED)
        status = replace(status, phase=SnapshotPhase.FAILED, error=error)
        conditions = set_condition(conditions, SnapshotConditionType.FAILURE, "True", SNAPSHOT_DEADLINE_EXCEEDED, stamp)
        conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "False", OPERATION_FAILED, stamp)
    elif phase_of(snapshot) == SnapshotPhase.SUCCEEDED or status.creation_time is not None:
        status = replace(status, phase=SnapshotPhase.SUCCEEDED, snapshot_volumes=_snapshot_volumes(content, state)
                         or status.snapshot_volumes)
        conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "False", OPERATION_COMPLETE, stamp)
    else:
        status = replace(status, phase=SnapshotPhase.IN_PROGRESS)
        if vm is not None:
            conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "True" if locked else "False",
                                       lock_message, stamp)
            if state is not None and content is None:
                indications = compute_indications(state)
                status = replace(status, indications=indications or None,
                                 source_indications=compute_source_indications(indications) or None,
                                 snapshot_volumes=_snapshot_volumes(None, state))
        else:
            conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "False", SOURCE_DOES_NOT_EXIST,
                                       stamp)
        if is_deleting(snapshot):
            status = replace(status, phase=SnapshotPhase.DELETING)
            conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "False", SNAPSHOT_DELETING, stamp)
    ready = bool(status.ready_to_use)
    conditions = set_condition(conditions, SnapshotConditionType.READY, "True" if ready else "False",
                               READY if ready else NOT_READY, stamp)
    if status.error is not None and status.phase != SnapshotPhase.FAILED:
        conditions = set_condition(conditions, SnapshotConditionType.PROGRESSING, "False", IN_ERROR_STATE, stamp)
    return replace(status, conditions=conditions)


def decide(snapshot: VirtualMachineSnapshot, vm: VirtualMachine | None, state: SourceState | None,
           content: VirtualMachineSnapshotContent | None, now: datetime) -> SnapshotPlan:
    """The :class:`SnapshotPlan` for ``snapshot`` given its source VM (None: missing), the VM's
    :class:`SourceState`, its content (None: not created) and the time."""
    plan = SnapshotPlan()
    name = (snapshot.metadata.name if snapshot.metadata else None) or ""
    terminating = is_terminating(snapshot, now)
    if not terminating and not has_finalizer(snapshot.metadata, SNAPSHOT_FINALIZER):
        plan.add_finalizer = True
    locked = is_locked_by(vm, name)
    lock_message = SOURCE_LOCKED_MESSAGE if locked else SOURCE_NOT_LOCKED_MESSAGE
    if vm is not None and snapshot.status is not None:
        if is_progressing(snapshot) and not terminating:
            if not locked:
                refusal = lock_refusal(vm, name)
                if refusal is None:
                    plan.lock, locked, lock_message = True, True, SOURCE_LOCKED_MESSAGE
                else:
                    lock_message = refusal
                plan.requeue_after = SNAPSHOT_RETRY_INTERVAL
            elif content is None:
                plan.create_content = True
        elif locked and can_unlock(snapshot, content, now):
            plan.unlock, locked = True, False
    if terminating and content is not None:
        content_deleting = content.metadata is not None and content.metadata.deletion_timestamp is not None
        if should_delete_content(snapshot, content):
            plan.delete_content = not content_deleting
        elif is_deleting(snapshot):
            plan.retain_content = bool(content.metadata and content.metadata.owner_references)
    status = compute_status(snapshot, vm, state, content, locked, lock_message, now)
    if status != snapshot.status:
        plan.status = status
    if status.phase == SnapshotPhase.FAILED and phase_of(snapshot) != SnapshotPhase.FAILED:
        plan.unfreeze = state is not None and state.online
        plan.events.append(("Warning", "VirtualMachineSnapshotFailed", SNAPSHOT_DEADLINE_EXCEEDED))
    if status.phase == SnapshotPhase.SUCCEEDED and status.ready_to_use and not (
            snapshot.status is not None and snapshot.status.ready_to_use):
        plan.events.append(("Normal", "VirtualMachineSnapshotReady", f"VirtualMachineSnapshot {name} is ready"))
    if is_deleting(snapshot) and not locked and has_finalizer(snapshot.metadata, SNAPSHOT_FINALIZER):
        plan.remove_finalizer = True
    if plan.requeue_after is None and status.phase == SnapshotPhase.IN_PROGRESS:
        left = seconds_until_deadline(snapshot, now)
        if left is not None:
            plan.requeue_after = max(left, 0.0) + 0.05
    if (plan.requeue_after is None and locked and status.phase in (SnapshotPhase.SUCCEEDED, SnapshotPhase.FAILED)
            and not plan.unlock):
        plan.requeue_after = SNAPSHOT_RETRY_INTERVAL
    return plan


def can_unlock(snapshot: VirtualMachineSnapshot, content: VirtualMachineSnapshotContent | None,
               now: datetime) -> bool:
    """Succeeded with a ready (or failed) content, or terminating with the content deleted when it
    must be (KubeVirt canUnlockSource, holding the lock until the copies are complete)."""
    if phase_of(snapshot) == SnapshotPhase.SUCCEEDED:
        return content is None or content_ready(content) or (content.status is not None
                                                              and content.status.error is not None)
    if is_terminating(snapshot, now):
        return content is None or not should_delete_content(snapshot, content)
    return phase_of(snapshot) == SnapshotPhase.FAILED
