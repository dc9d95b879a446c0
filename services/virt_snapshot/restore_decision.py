"""The decisions of a VirtualMachineRestore (pure): target readiness, restored claim names and
bodies, the restored VM, conditions. Source: KubeVirt's pkg/storage/snapshot/restore.go (its
messages, reasons, labels and annotations carry over; :mod:`restore_controller` acts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.api.meta import Condition
from shared.api.snapshot import (
    VirtualMachineRestore,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotContent,
)
from shared.api.snapshot_vocabulary import (
    DEFAULT_RESTORE_GRACE_PERIOD_SECONDS,
    SnapshotConditionType,
    SnapshotPhase,
    TargetReadinessPolicy,
)
from shared.api.run_strategy import RunStrategyError, read_run_strategy
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import RunStrategy, format_time, is_final_phase, parse_time

# Event reasons (restore.go)
RESTORE_COMPLETE_EVENT = "VirtualMachineRestoreComplete"
RESTORE_ERROR_EVENT = "VirtualMachineRestoreError"
RESTORE_VM_NOT_READY_EVENT = "RestoreTargetNotReady"
RESTORE_FAILED_EVENT = "Operation failed"
"""KubeVirt's reason of the Warning Event of a restore that fails for good (restoreFailedEvent)."""

# Condition reasons and messages (restore.go)
INITIALIZING = "Initializing VirtualMachineRestore"
CREATING_PVCS = "Creating new PVCs"
WAITING_PVCS = "Waiting for new PVCs"
UPDATING_TARGET = "Updating target spec"
WAITING_TARGET = "Waiting for target update"
OPERATION_COMPLETE = "Operation complete"
DELETING = "VM restore is deleting"
_GRACE = "5m0s"  # snapshotv1.DefaultGracePeriod as Go prints it
WAIT_EVENTUALLY_MESSAGE = ("Waiting for target VM to be powered off. Please stop the restore target to proceed "
                           "with restore")
STOP_TARGET_MESSAGE = "Automatically stopping restore target for restore operation"
#: seconds between checks while a StopTarget restore waits for the stopped VMI to go
STOP_TARGET_RECHECK_SECONDS = 1.0
VMI_EXISTS_EVENT_MESSAGE = ("Restore target VMI still exists, please stop the restore target to proceed with "
                            "restore")
TARGET_NOT_READY_FAILURE_MESSAGE = "Restore target VMI must be powered off before restore operation"
ERROR_RESTORE_TO_EXISTING_TARGET = ("restore source and restore target are different but restore target already "
                                    "exists")
RESTORE_GRACE_PERIOD_EXCEEDED_ERROR = (f"Restore target failed to be ready within {_GRACE}. Please power off the "
                                       "target VM before attempting restore")
WAIT_GRACE_PERIOD_MESSAGE = ("Waiting for target VM to be powered off. Please stop the restore target to proceed "
                             f"with restore, or the operation will fail after {_GRACE}")



def complete_message(name: str) -> str:
    """Message of the ``VirtualMachineRestoreComplete`` Event."""
    return f"Successfully completed VirtualMachineRestore {name}"


def error_event_message(message: str, *, failed: bool) -> str:
    """Message of the Warning Event of an error (``encountered error``) or a failure (``failed``)."""
    return f"VirtualMachineRestore failed {message}" if failed else f"VirtualMachineRestore encountered error {message}"


def lock_held_message(holder: str) -> str:
    """The error while another restore holds the target (``vm restore X in progress``)."""
    return f"vm restore {holder} in progress"


class RestoreError(Exception):
    """A restore step cannot go on now (``message`` goes to the conditions; retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- conditions -----------------------------------------------------------------------------


def update_condition(conditions: list[Condition] | None, ctype: str, status: str, reason: str,
                     now: datetime) -> list[Condition]:
    """``conditions`` with the one of ``ctype`` set (replaced only when status or reason change,
    so its transition time is kept otherwise; KubeVirt's updateCondition)."""
    out = list(conditions or [])
    for i, cond in enumerate(out):
        if cond.type == ctype:
            if cond.status != status or cond.reason != reason:
                out[i] = Condition(type=ctype, status=status, reason=reason, last_transition_time=format_time(now))
            return out
    out.append(Condition(type=ctype, status=status, reason=reason, last_transition_time=format_time(now)))
    return out


def progress_conditions(conditions: list[Condition] | None, *, progressing: bool, ready: bool, reason: str,
                        now: datetime, failed: bool = False) -> list[Condition]:
    """Progressing/Ready (and Failure=True when ``failed``) with one reason."""
    out = update_condition(conditions, SnapshotConditionType.PROGRESSING, "True" if progressing else "False",
                           reason, now)
    out = update_condition(out, SnapshotConditionType.READY, "True" if ready else "False", reason, now)
    if failed:
        out = update_condition(out, SnapshotConditionType.FAILURE, "True", reason, now)
    return out


def is_complete(restore: VirtualMachineRestore) -> bool:
    """``status.complete`` is true."""
    return bool(restore.status is not None and restore.status.complete)


def is_failed(restore: VirtualMachineRestore) -> bool:
    """A Failure condition exists (KubeVirt's vmRestoreFailed)."""
    conditions = restore.status.conditions if restore.status is not None else None
    return any(c.type == SnapshotConditionType.FAILURE for c in conditions or [])


def is_progressing(restore: VirtualMachineRestore) -> bool:
    """Neither complete nor failed."""
    return not is_complete(restore) and not is_failed(restore)


# -- target readiness -----------------------------------------------------------------------


class ReadinessStep(StrEnum):
    """What to do about the target VM before restoring."""

    READY = "Ready"
    WAIT = "Wait"
    STOP = "Stop"
    FAIL = "Fail"


@dataclass(frozen=True)
class Readiness:
    """``step`` with the condition ``reason`` and the ``RestoreTargetNotReady`` Event message;
    ``recheck_after`` seconds for WaitGracePeriod (when the grace period ends)."""

    step: ReadinessStep
    reason: str = ""
    event_message: str = ""
    recheck_after: float | None = None


def target_vmi_running(vmi: VirtualMachineInstance | None) -> bool:
    """The target's VMI exists and is not final (the restore must wait for it to stop)."""
    return vmi is not None and not is_final_phase(vmi.status.phase if vmi.status is not None else None)


def compute_target_readiness(restore: VirtualMachineRestore, *, target_exists: bool,
                             vmi: VirtualMachineInstance | None, now: datetime) -> Readiness:
    """KubeVirt's handleVMRestoreTargetNotReady: ready when the target does not exist or its VMI
    is absent or final; else by ``spec.targetReadinessPolicy`` (default WaitGracePeriod: wait up to
    5 minutes from the restore's creation, then fail)."""
    if not target_exists or not target_vmi_running(vmi):
        return Readiness(ReadinessStep.READY)
    policy = restore.spec.target_readiness_policy or TargetReadinessPolicy.WAIT_GRACE_PERIOD
    if policy == TargetReadinessPolicy.WAIT_EVENTUALLY:
        return Readiness(ReadinessStep.WAIT, WAIT_EVENTUALLY_MESSAGE, VMI_EXISTS_EVENT_MESSAGE)
    if policy == TargetReadinessPolicy.STOP_TARGET:
        return Readiness(ReadinessStep.STOP, STOP_TARGET_MESSAGE, STOP_TARGET_MESSAGE,
                         recheck_after=STOP_TARGET_RECHECK_SECONDS)
    if policy == TargetReadinessPolicy.FAIL_IMMEDIATE:
        return Readiness(ReadinessStep.FAIL, TARGET_NOT_READY_FAILURE_MESSAGE)
    if policy == TargetReadinessPolicy.WAIT_GRACE_PERIOD:
        created = parse_time(restore.metadata.creation_timestamp if restore.metadata else None) or now
        remaining = (created + timedelta(seconds=DEFAULT_RESTORE_GRACE_PERIOD_SECONDS) - now).total_seconds()
        if remaining < 0:
            return Readiness(ReadinessStep.FAIL, RESTORE_GRACE_PERIOD_EXCEEDED_ERROR)
        return Readiness(ReadinessStep.WAIT, WAIT_GRACE_PERIOD_MESSAGE, VMI_EXISTS_EVENT_MESSAGE,
                         recheck_after=remaining + 0.5)
    raise RestoreError(f"unknown targetReadinessPolicy: {policy}")


def stop_needed(target: VirtualMachine) -> bool:
    """StopTarget: the target VM still has to be stopped (its run strategy is not Halted yet);
    once it is, the restore only waits for the VMI to go (no new write, no new Event)."""
    try:
        return read_run_strategy(target.spec.running, target.spec.run_strategy) != RunStrategy.HALTED
    except RunStrategyError:
        return True


# -- snapshot and content ---------------------------------------------------------------------


def check_snapshot(namespace: str, name: str, snapshot: VirtualMachineSnapshot | None) -> str:
    """The content name of a usable snapshot. Raises RestoreError with KubeVirt's messages."""
    key = f"{namespace}/{name}"
    if snapshot is None:
        raise RestoreError(f"VMSnapshot {key} does not exist")
    status = snapshot.status
    if status is not None and status.phase == SnapshotPhase.FAILED:
        raise RestoreError(f"VMSnapshot {key} failed and is invalid to use")
    if status is None or not status.ready_to_use:
        raise RestoreError(f"VMSnapshot {key} not ready")
    if not status.virtual_machine_snapshot_content_name:
        raise RestoreError(f"no snapshot content name in {key}")
    return status.virtual_machine_snapshot_content_name


def check_content(namespace: str, name: str, content: VirtualMachineSnapshotContent | None) -> None:
    """Raises RestoreError unless the content exists and is readyToUse."""
    key = f"{namespace}/{name}"
    if content is None:
        raise RestoreError(f"VMSnapshotContent {key} does not exist")
    if content.status is None or not content.status.ready_to_use:
        raise RestoreError(f"VMSnapshotContent {key} not ready")


def source_and_target_differ(target_uid: str | None, snapshot: VirtualMachineSnapshot) -> bool:
    """The existing target is not the snapshot's source VM (by uid)."""
    source_uid = snapshot.status.source_uid if snapshot.status is not None else None
    return source_uid is not None and target_uid != source_uid
