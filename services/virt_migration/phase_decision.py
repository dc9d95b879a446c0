"""The VMIM phase machine (pure): from a VMIM, its VMI and the counts, the next action.

KubeVirt's rules (``pkg/virt-controller/watch/migration/migration.go``, kubevirt-api.md §8) on
the roles of this project's services (docs/architecture.md, "Live migration"):

- ``""`` -> ``Pending``; ``Failed`` when another non-final VMIM of the VMI was created earlier,
  or the VMI is missing, final, being deleted or not Running.
- ``Pending`` -> ``Scheduling`` when one more migration fits the limits
  (:mod:`services.virt_migration.limits`) and no evacuation backoff is pending; with a limit of
  0 a Warning Event ``MigrationPending`` says so (nothing can start until it is raised).
- ``Scheduling`` -> ``Scheduled`` once scheduler-bridge wrote ``status.migrationState.targetNode``;
  ``Failed`` when that takes longer than the scheduling timeout.
- ``Scheduled``: the hand-off is written on the VMI (:class:`VmiChange.HANDOFF`); once the VMI's
  ``migrationState.migrationUid`` is this VMIM's uid -> ``PreparingTarget``.
- ``PreparingTarget`` -> ``TargetReady`` (``targetNodeAddress``) -> ``Running`` (``startTimestamp``);
  when the source has not started within the target-ready timeout counted from entering
  ``PreparingTarget`` (KubeVirt fails a migration whose target pod is not ready in 5 min), the
  migration is ended as failed on the VMI (:class:`VmiChange.TARGET_TIMEOUT`: nobody else would
  write it; the target then removes what it prepared) and the phase follows.
- -> ``Succeeded`` when the VMI's migration state is completed, not failed, and ``nodeName`` is
  the target; -> ``Failed`` when it failed, was cleared, or names another migration.
- cancel (``deletionTimestamp``): before the hand-off -> ``Failed`` at once (condition
  ``migrationAbortRequested``, ``abortStatus: Succeeded``); after it, ``abortRequested`` is
  written on the VMI (:class:`VmiChange.ABORT`; before the source started it also ends the
  migration there as failed) and the phase follows the VMI.
- a final VMIM: the VMI's target-node label (and, after success, its ``evacuationNodeName`` for
  the source) are removed (:class:`VmiChange.FINISH`), then the finalizer.

Every phase change appends to ``phaseTransitionTimestamps``; while the VMI's migration state is
this migration's, ``status.migrationState`` is a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import msgspec

from services.virt_migration.limits import MigrationCounts, MigrationLimits, compute_zero_limit_reason, has_capacity
from shared.api.meta import Condition
from shared.api.migration import (
    MigrationState,
    PhaseTransitionTimestamp,
    VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationStatus,
)
from shared.api.migration_vocabulary import (
    MIGRATION_FINALIZER,
    MIGRATION_TARGET_NODE_LABEL,
    MigrationAbortStatus,
    MigrationConditionType,
    MigrationPhase,
    is_final_migration_phase,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import ConditionStatus, EventType, Phase, format_micro_time, is_final_phase, parse_time

_replace = msgspec.structs.replace

# KubeVirt's event reasons (pkg/controller/controller.go)
SUCCESSFUL_CREATE = "SuccessfulCreate"
SUCCESSFUL_HAND_OVER = "SuccessfulHandOver"
SUCCESSFUL_MIGRATION = "SuccessfulMigration"
FAILED_MIGRATION = "FailedMigration"
SUCCESSFUL_ABORT_MIGRATION = "SuccessfulAbortMigration"
MIGRATION_BACKOFF = "MigrationBackoff"
MIGRATION_PENDING = "MigrationPending"  # ours: a limit of 0 keeps every migration Pending

# KubeVirt's messages where it has them (migration.go), ours otherwise
VMI_MISSING = "Migration failed because vmi does not exist."
VMI_SHUTDOWN = "Migration failed vmi shutdown during migration."
VMI_NOT_RUNNING = "Migration failed because vmi is not running."
CANCELED = "Migration failed due to being canceled"
ANOTHER_IN_PROGRESS = "VMI is not eligible for migration because another migration job is in progress."
STATE_CLEARED = "VMI's migration state was cleared during the active migration."
TAKEN_OVER = "VMI's migration state was taken over by another migration job during active migration."
SOURCE_FAILED = "source node reported migration failed"
SOURCE_SUCCEEDED = "Source node reported migration succeeded"
HANDED_OVER = "Migration target on node {node} is ready for preparation by virt-handler."
ABORT_REQUESTED = "Migration is ready to be canceled by virt-handler."
TARGET_REQUESTED = "Requested a migration target for VMI {vmi} from scheduler-bridge."
TARGET_IS_SOURCE = "Migration target node {node} is the VMI's current node."
TARGET_NOT_READY = "Migration target on node {node} was not ready within {seconds:g} seconds."


class VmiChange(StrEnum):
    """A write on the VMI (built by :mod:`services.virt_migration.vmi_writes`)."""

    HANDOFF = "HandOff"
    ABORT = "Abort"
    FINISH = "Finish"
    TARGET_TIMEOUT = "TargetTimeout"


@dataclass(frozen=True)
class EventNote:
    """An Event to record: on the VMIM, or on its VMI when ``on_vmi``."""

    type: str
    reason: str
    message: str
    on_vmi: bool = False


@dataclass(frozen=True)
class MigrationInputs:
    """What the decision needs beside the two objects: whether another non-final VMIM of the VMI
    was created earlier, the counts and limits (:mod:`limits`), the scheduling timeout (s) and the
    end of an evacuation backoff (None: none)."""

    earlier_active: bool = False
    counts: MigrationCounts = MigrationCounts()
    limits: MigrationLimits = MigrationLimits()
    scheduling_timeout: float = 300.0
    backoff_until: datetime | None = None
    target_ready_timeout: float = 300.0


@dataclass(frozen=True)
class MigrationAction:
    """The next step: the VMIM's new ``status`` (None: unchanged), a VMI write, the finalizer
    removal, Events, and a re-check after ``requeue_after`` seconds."""

    status: VirtualMachineInstanceMigrationStatus | None = None
    vmi_change: VmiChange | None = None
    remove_finalizer: bool = False
    events: tuple[EventNote, ...] = field(default=())
    requeue_after: float | None = None
    failure_reason: str | None = None  # with TARGET_TIMEOUT: the VMI's migrationState.failureReason

    @property
    def phase(self) -> str | None:
        """The phase written by this action (None when the status is unchanged)."""
        return self.status.phase if self.status is not None else None


NOTHING = MigrationAction()


def phase_of(vmim: VirtualMachineInstanceMigration) -> str:
    """``status.phase`` ("" when unset)."""
    return (vmim.status.phase if vmim.status is not None else None) or MigrationPhase.UNSET


def uid_of(obj: VirtualMachineInstanceMigration | VirtualMachineInstance | None) -> str | None:
    """``metadata.uid``."""
    return obj.metadata.uid if obj is not None and obj.metadata is not None else None


def vmi_migration_state(vmi: VirtualMachineInstance | None) -> MigrationState | None:
    """The VMI's ``status.migrationState`` (None when absent)."""
    return vmi.status.migration_state if vmi is not None and vmi.status is not None else None


def own_migration_state(vmim: VirtualMachineInstanceMigration,
                        vmi: VirtualMachineInstance | None) -> MigrationState | None:
    """The VMI's migration state when it is this VMIM's (``migrationUid`` == the VMIM's uid)."""
    state = vmi_migration_state(vmi)
    uid = uid_of(vmim)
    return state if state is not None and uid and state.migration_uid == uid else None


def is_deleting(obj: VirtualMachineInstanceMigration | VirtualMachineInstance | None) -> bool:
    """Whether ``metadata.deletionTimestamp`` is set."""
    return obj is not None and obj.metadata is not None and bool(obj.metadata.deletion_timestamp)


def target_node_of(vmim: VirtualMachineInstanceMigration) -> str | None:
    """The target scheduler-bridge chose (``status.migrationState.targetNode``)."""
    state = vmim.status.migration_state if vmim.status is not None else None
    return (state.target_node if state is not None else None) or None


def phase_entered_at(vmim: VirtualMachineInstanceMigration, phase: str) -> datetime | None:
    """When the VMIM entered ``phase`` (its last ``phaseTransitionTimestamps`` entry of it)."""
    stamps = vmim.status.phase_transition_timestamps if vmim.status is not None else None
    found = [s.phase_transition_timestamp for s in stamps or [] if s.phase == phase]
    return parse_time(found[-1]) if found and found[-1] else None


def _status_of(vmim: VirtualMachineInstanceMigration) -> VirtualMachineInstanceMigrationStatus:
    return vmim.status or VirtualMachineInstanceMigrationStatus()


def _with_copy(status: VirtualMachineInstanceMigrationStatus,
               own: MigrationState | None) -> VirtualMachineInstanceMigrationStatus:
    """``status`` whose ``migrationState`` is the VMI's (when it is this migration's)."""
    return status if own is None or status.migration_state == own else _replace(status, migration_state=own)


def _moved(vmim: VirtualMachineInstanceMigration, phase: str, now: datetime, own: MigrationState | None,
           *events: EventNote, status: VirtualMachineInstanceMigrationStatus | None = None,
           requeue_after: float | None = None) -> MigrationAction:
    base = _with_copy(status or _status_of(vmim), own)
    stamps = [*(base.phase_transition_timestamps or []),
              PhaseTransitionTimestamp(phase=phase, phase_transition_timestamp=format_micro_time(now))]
    new = _replace(base, phase=phase, phase_transition_timestamps=stamps)
    return MigrationAction(status=new, events=events, requeue_after=requeue_after)


def _failed(vmim: VirtualMachineInstanceMigration, now: datetime, own: MigrationState | None, message: str,
            status: VirtualMachineInstanceMigrationStatus | None = None) -> MigrationAction:
    return _moved(vmim, MigrationPhase.FAILED, now, own,
                  EventNote(EventType.WARNING, FAILED_MIGRATION, message), status=status)


def _with_abort_condition(status: VirtualMachineInstanceMigrationStatus,
                          now: datetime) -> VirtualMachineInstanceMigrationStatus:
    """``status`` with condition ``migrationAbortRequested=True`` (kept when present)."""
    conditions = status.conditions or []
    if any(c.type == MigrationConditionType.ABORT_REQUESTED for c in conditions):
        return status
    stamp = format_micro_time(now)
    condition = Condition(type=MigrationConditionType.ABORT_REQUESTED.value, status=ConditionStatus.TRUE.value,
                          last_probe_time=stamp, last_transition_time=stamp)
    return _replace(status, conditions=[*conditions, condition])


def _cancelled_before_handoff(vmim: VirtualMachineInstanceMigration, now: datetime) -> MigrationAction:
    status = _with_abort_condition(_status_of(vmim), now)
    state = status.migration_state or MigrationState()
    status = _replace(status, migration_state=_replace(state, abort_requested=True,
                                                       abort_status=MigrationAbortStatus.SUCCEEDED.value))
    return _failed(vmim, now, None, CANCELED, status=status)


def _needs_finish(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance | None,
                  own: MigrationState | None) -> bool:
    """A final VMIM whose VMI still carries its target label, or (after success) the
    ``evacuationNodeName`` of the node it left."""
    if vmi is None or own is None or vmi.metadata is None:
        return False
    if MIGRATION_TARGET_NODE_LABEL in (vmi.metadata.labels or {}):
        return True
    evacuating = vmi.status.evacuation_node_name if vmi.status is not None else None
    return (phase_of(vmim) == MigrationPhase.SUCCEEDED and bool(evacuating)
            and evacuating == own.source_node)


def _decide_final(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance | None,
                  own: MigrationState | None) -> MigrationAction:
    status = _with_copy(_status_of(vmim), own)
    changed = status if status != vmim.status else None
    if _needs_finish(vmim, vmi, own):
        return MigrationAction(status=changed, vmi_change=VmiChange.FINISH)
    finalizers = vmim.metadata.finalizers if vmim.metadata is not None else None
    return MigrationAction(status=changed, remove_finalizer=MIGRATION_FINALIZER in (finalizers or []))


def _vmi_unfit(vmi: VirtualMachineInstance | None) -> str | None:
    """Why the VMI cannot take part in a migration any more (None: it can)."""
    if vmi is None:
        return VMI_MISSING
    phase = vmi.status.phase if vmi.status is not None else None
    if is_final_phase(phase) or is_deleting(vmi):
        return VMI_SHUTDOWN
    return None


def _decide_before_handoff(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance,
                           inputs: MigrationInputs, now: datetime) -> MigrationAction:
    """Phases "", Pending and Scheduling."""
    phase = phase_of(vmim)
    if is_deleting(vmim):
        return _cancelled_before_handoff(vmim, now)
    if inputs.earlier_active:
        return _failed(vmim, now, None, ANOTHER_IN_PROGRESS)
    if phase in (MigrationPhase.UNSET, MigrationPhase.PENDING) and (
            vmi.status is None or vmi.status.phase != Phase.RUNNING):
        return _failed(vmim, now, None, VMI_NOT_RUNNING)
    if phase == MigrationPhase.UNSET:
        return _moved(vmim, MigrationPhase.PENDING, now, None)
    if phase == MigrationPhase.PENDING:
        if inputs.backoff_until is not None and inputs.backoff_until > now:
            vmi_name = f"{vmi.metadata.namespace}/{vmi.metadata.name}" if vmi.metadata else ""
            return MigrationAction(requeue_after=(inputs.backoff_until - now).total_seconds(), events=(
                EventNote(EventType.WARNING, MIGRATION_BACKOFF, f"backoff migrating vmi {vmi_name}", on_vmi=True),))
        if not has_capacity(inputs.counts, inputs.limits):
            blocked = compute_zero_limit_reason(inputs.limits)
            return NOTHING if blocked is None else MigrationAction(
                events=(EventNote(EventType.WARNING, MIGRATION_PENDING, blocked),))
        name = vmi.metadata.name if vmi.metadata else ""
        return _moved(vmim, MigrationPhase.SCHEDULING, now, None,
                      EventNote(EventType.NORMAL, SUCCESSFUL_CREATE, TARGET_REQUESTED.format(vmi=name)),
                      requeue_after=inputs.scheduling_timeout)
    # Scheduling
    target = target_node_of(vmim)
    if target:
        if vmi.status is not None and target == vmi.status.node_name:
            return _failed(vmim, now, None, TARGET_IS_SOURCE.format(node=target))
        return _moved(vmim, MigrationPhase.SCHEDULED, now, None)
    since = phase_entered_at(vmim, MigrationPhase.SCHEDULING) or now
    waited = (now - since).total_seconds()
    if waited >= inputs.scheduling_timeout:
        return _failed(vmim, now, None, f"Migration target could not be scheduled within "
                                        f"{inputs.scheduling_timeout:g} seconds.")
    return MigrationAction(requeue_after=inputs.scheduling_timeout - waited)


def _decide_after_handoff(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance,
                          own: MigrationState, now: datetime, timeout: float) -> MigrationAction:
    """Phases PreparingTarget, TargetReady, Running (and Scheduled once the hand-off is seen);
    ``timeout``: the target-ready timeout (s)."""
    phase = phase_of(vmim)
    if own.failed:
        if own.abort_requested:
            return _failed(vmim, now, own, CANCELED)
        # before the source started only virt-migration ends a migration (the target-ready timeout)
        before_start = phase in (MigrationPhase.PREPARING_TARGET, MigrationPhase.TARGET_READY) \
            and not own.start_timestamp
        return _failed(vmim, now, own, (own.failure_reason if before_start else None) or SOURCE_FAILED)
    node = vmi.status.node_name if vmi.status is not None else None
    if own.completed and own.target_node and node == own.target_node:
        return _moved(vmim, MigrationPhase.SUCCEEDED, now, own,
                      EventNote(EventType.NORMAL, SUCCESSFUL_MIGRATION, SOURCE_SUCCEEDED))
    status = _with_copy(_status_of(vmim), own)
    if is_deleting(vmim):
        status = _with_abort_condition(status, now)
        if not own.abort_requested:
            return MigrationAction(status=status, vmi_change=VmiChange.ABORT, events=(
                EventNote(EventType.NORMAL, SUCCESSFUL_ABORT_MIGRATION, ABORT_REQUESTED),))
    if phase == MigrationPhase.SCHEDULED:
        return _moved(vmim, MigrationPhase.PREPARING_TARGET, now, own, status=status,
                      requeue_after=timeout)
    left = None
    if phase in (MigrationPhase.PREPARING_TARGET, MigrationPhase.TARGET_READY) and not own.start_timestamp:
        since = phase_entered_at(vmim, MigrationPhase.PREPARING_TARGET) or now
        left = timeout - (now - since).total_seconds()
        if left <= 0 and not own.abort_requested:
            reason = TARGET_NOT_READY.format(node=own.target_node or "", seconds=timeout)
            return MigrationAction(status=status if status != vmim.status else None,
                                   vmi_change=VmiChange.TARGET_TIMEOUT, failure_reason=reason)
    if phase == MigrationPhase.PREPARING_TARGET and own.target_node_address:
        return _moved(vmim, MigrationPhase.TARGET_READY, now, own, status=status, requeue_after=left)
    if phase == MigrationPhase.TARGET_READY and own.start_timestamp:
        return _moved(vmim, MigrationPhase.RUNNING, now, own, status=status)
    if status != vmim.status:
        return MigrationAction(status=status, requeue_after=left)
    return MigrationAction(requeue_after=left) if left is not None else NOTHING


def compute_migration_action(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance | None,
                             inputs: MigrationInputs, now: datetime) -> MigrationAction:
    """The next action for ``vmim`` given its VMI (None: gone) at ``now`` (see the module
    docstring). Inputs are not modified."""
    own = own_migration_state(vmim, vmi)
    phase = phase_of(vmim)
    if is_final_migration_phase(phase):
        return _decide_final(vmim, vmi, own)
    unfit = _vmi_unfit(vmi)
    if unfit is not None or vmi is None:
        return _failed(vmim, now, own, unfit or VMI_MISSING)
    if phase in (MigrationPhase.UNSET, MigrationPhase.PENDING, MigrationPhase.SCHEDULING):
        return _decide_before_handoff(vmim, vmi, inputs, now)
    if own is not None:
        return _decide_after_handoff(vmim, vmi, own, now, inputs.target_ready_timeout)
    if phase != MigrationPhase.SCHEDULED:  # the VMI's state for this migration is gone or another's
        return _failed(vmim, now, None, TAKEN_OVER if vmi_migration_state(vmi) is not None else STATE_CLEARED)
    if is_deleting(vmim):
        return _cancelled_before_handoff(vmim, now)
    current = vmi_migration_state(vmi)
    if current is not None and current.migration_uid and not (current.completed or current.failed):
        return _failed(vmim, now, None, ANOTHER_IN_PROGRESS)
    target = target_node_of(vmim) or ""
    return MigrationAction(vmi_change=VmiChange.HANDOFF, events=(
        EventNote(EventType.NORMAL, SUCCESSFUL_HAND_OVER, HANDED_OVER.format(node=target)),))
