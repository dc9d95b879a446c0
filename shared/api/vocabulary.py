"""The words every service shares: phases, conditions, reasons, run strategies, times, keys.

One place for the names KubeVirt and Kubernetes give to states, so no service spells a phase as
a string literal of its own. Each enum is a ``StrEnum``: a member compares equal to (and
serializes as) the string KubeVirt writes, so ``Phase.RUNNING == "Running"`` and a Struct field
typed ``str`` accepts a member unchanged.

Sources: ``staging/src/kubevirt.io/api/core/v1/types.go`` (VirtualMachineInstancePhase,
VirtualMachineInstanceConditionType, VirtualMachinePrintableStatus, VirtualMachineRunStrategy,
StateChangeRequestAction), ``pkg/virt-controller/watch`` (reasons), Kubernetes ``metav1.Time``
and ``metav1.MicroTime`` (timestamps), client-go ``cache.MetaNamespaceKeyFunc`` (keys).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum


class Phase(StrEnum):
    """``VirtualMachineInstance.status.phase`` (an empty phase is "not yet processed")."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"
    WAITING_FOR_SYNC = "WaitingForSync"


#: Phases a VMI never leaves (KubeVirt's ``IsFinal``).
FINAL_PHASES: frozenset[str] = frozenset({Phase.SUCCEEDED, Phase.FAILED})


def is_final_phase(phase: str | None) -> bool:
    """Succeeded or Failed (KubeVirt's ``VirtualMachineInstance.IsFinal``)."""
    return phase in FINAL_PHASES


class ConditionType(StrEnum):
    """Condition types on VMIs, VMs, replica sets and Nodes used here."""

    READY = "Ready"
    PAUSED = "Paused"
    AGENT_CONNECTED = "AgentConnected"
    SYNCHRONIZED = "Synchronized"
    POD_SCHEDULED = "PodScheduled"
    LIVE_MIGRATABLE = "LiveMigratable"
    FAILURE = "Failure"
    REPLICA_FAILURE = "ReplicaFailure"
    PROVISIONING = "Provisioning"


class ConditionStatus(StrEnum):
    """``conditions[].status``: Kubernetes' ``ConditionStatus``."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Condition and Event reasons KubeVirt writes that more than one service reads."""

    UNSCHEDULABLE = "Unschedulable"
    NODE_UNRESPONSIVE = "NodeUnresponsive"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    SYNC_FAILED = "SyncFailed"
    FAILED_CREATE = "FailedCreate"
    FAILED_DELETE = "FailedDelete"
    FAILED_UPDATE = "FailedUpdate"
    SUCCESSFUL_CREATE = "SuccessfulCreate"
    SUCCESSFUL_DELETE = "SuccessfulDelete"
    VMI_NOT_EXISTS = "VMINotExists"
    VMI_CONDITION_MISSING = "VMIConditionMissing"


class RunStrategy(StrEnum):
    """``VirtualMachine.spec.runStrategy``."""

    ALWAYS = "Always"
    RERUN_ON_FAILURE = "RerunOnFailure"
    MANUAL = "Manual"
    HALTED = "Halted"
    ONCE = "Once"
    WAIT_AS_RECEIVER = "WaitAsReceiver"


class StateChangeAction(StrEnum):
    """``VirtualMachine.status.stateChangeRequests[].action``."""

    START = "Start"
    STOP = "Stop"


class PrintableStatus(StrEnum):
    """``VirtualMachine.status.printableStatus`` (the STATUS column of ``kubectl get vm``)."""

    STOPPED = "Stopped"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPING = "Stopping"
    TERMINATING = "Terminating"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    MIGRATING = "Migrating"
    UNKNOWN = "Unknown"
    ERROR_UNSCHEDULABLE = "ErrorUnschedulable"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERROR_PVC_NOT_FOUND = "ErrorPvcNotFound"
    WAITING_FOR_RECEIVER = "WaitingForReceiver"


class EventType(StrEnum):
    """Kubernetes Event ``type``."""

    NORMAL = "Normal"
    WARNING = "Warning"


# -- time -------------------------------------------------------------------------------------
def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with whole seconds, as ``metav1.Time`` serializes: ``2026-01-02T03:04:05Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, as ``metav1.MicroTime`` serializes:
    ``2026-01-02T03:04:05.123456Z`` (leases, phase transition timestamps, Event times)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset, optional fraction) as a UTC datetime;
    None or "" -> None. Raises ``ValueError`` for text that is not RFC 3339."""
    if not text:
        return None
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


# -- keys -------------------------------------------------------------------------------------
def object_key(namespace: str | None, name: str) -> str:
    """Cache and work-queue key: ``namespace/name``, or ``name`` for cluster-scoped objects
    (client-go's ``MetaNamespaceKeyFunc``)."""
    return f"{namespace}/{name}" if namespace else name


def split_key(key: str) -> tuple[str | None, str]:
    """``"ns/name"`` -> ``("ns", "name")``; ``"name"`` -> ``(None, "name")``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)
