"""The words of snapshot and restore: phases, indications, policies, condition reasons, and the
finalizers, labels and names snapshot and restore put on objects.

Sources: ``staging/src/kubevirt.io/api/snapshot/v1beta1/types.go`` (phases, Indication,
DeletionPolicy, TargetReadinessPolicy, VolumeRestorePolicy, VolumeOwnershipPolicy, condition types,
DefaultFailureDeadline, DefaultGracePeriod), ``pkg/storage/snapshot/{snapshot,source,restore}.go``
(finalizers, labels, name formats, messages) and kubevirt-api.md §9. Names under
``kubevirt-py.io/`` are this project's.
"""

from __future__ import annotations

from enum import StrEnum

SNAPSHOT_GROUP = "snapshot.kubevirt.io"
SNAPSHOT_VERSION = "v1beta1"
SNAPSHOT_API_VERSION = f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}"

DEFAULT_FAILURE_DEADLINE_SECONDS = 300
"""``failureDeadline`` when unset (KubeVirt's DefaultFailureDeadline, 5 min); ``0s`` means none."""

DEFAULT_RESTORE_GRACE_PERIOD_SECONDS = 300
"""How long ``WaitGracePeriod`` waits for the target VM to stop (KubeVirt's DefaultGracePeriod)."""


class SnapshotPhase(StrEnum):
    """``VirtualMachineSnapshot.status.phase``."""

    UNSET = ""
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"
    UNKNOWN = "Unknown"


class Indication(StrEnum):
    """``status.indications`` of a VirtualMachineSnapshot: how the snapshot was taken."""

    ONLINE = "Online"
    NO_GUEST_AGENT = "NoGuestAgent"
    GUEST_AGENT = "GuestAgent"
    QUIESCE_TIMEOUT = "QuiesceTimeout"
    PAUSED = "Paused"
    PARTIAL_SNAPSHOT = "PartialSnapshot"


class DeletionPolicy(StrEnum):
    """``spec.deletionPolicy``: whether the content (and its volume copies) goes with the snapshot."""

    DELETE = "Delete"
    RETAIN = "Retain"


class SnapshotConditionType(StrEnum):
    """Condition types of snapshots, contents and restores."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    FAILURE = "Failure"


class TargetReadinessPolicy(StrEnum):
    """``VirtualMachineRestore.spec.targetReadinessPolicy`` (default ``WaitGracePeriod``)."""

    STOP_TARGET = "StopTarget"
    WAIT_GRACE_PERIOD = "WaitGracePeriod"
    FAIL_IMMEDIATE = "FailImmediate"
    WAIT_EVENTUALLY = "WaitEventually"


class VolumeRestorePolicy(StrEnum):
    """``spec.volumeRestorePolicy`` (default ``RandomizeNames``): how restored claims are named."""

    RANDOMIZE_NAMES = "RandomizeNames"
    IN_PLACE = "InPlace"
    PREFIX_TARGET_NAME = "PrefixTargetName"


class VolumeOwnershipPolicy(StrEnum):
    """``spec.volumeOwnershipPolicy`` (default ``Vm``): whether restored claims are owned by the VM."""

    VM = "Vm"
    NONE = "None"


# Finalizers (pkg/storage/snapshot/snapshot.go, source.go, restore.go)
SNAPSHOT_FINALIZER = "snapshot.kubevirt.io/vmsnapshot-protection"
SNAPSHOT_CONTENT_FINALIZER = "snapshot.kubevirt.io/vmsnapshotcontent-protection"
SNAPSHOT_SOURCE_FINALIZER = "snapshot.kubevirt.io/snapshot-source-protection"
RESTORE_FINALIZER = "snapshot.kubevirt.io/vmrestore-protection"

# Labels and annotations
SNAPSHOT_SOURCE_NAME_LABEL = "snapshot.kubevirt.io/source-vm-name"
SNAPSHOT_SOURCE_NAMESPACE_LABEL = "snapshot.kubevirt.io/source-vm-namespace"
RESTORE_NAME_ANNOTATION = "restore.kubevirt.io/name"
LAST_RESTORE_ANNOTATION = "restore.kubevirt.io/lastRestoreUID"
RESTORE_SOURCE_NAME_LABEL = "restore.kubevirt.io/source-vm-name"
RESTORE_SOURCE_NAMESPACE_LABEL = "restore.kubevirt.io/source-vm-namespace"
RESTORE_OWNED_BY_VM_LABEL = "restore.kubevirt.io/owned-by-vm"

# Messages KubeVirt uses verbatim
SNAPSHOT_DEADLINE_EXCEEDED = "snapshot deadline exceeded"
SOURCE_LOCKED_MESSAGE = "Source locked and operation in progress"
SOURCE_NOT_LOCKED_MESSAGE = "Source not locked"


def snapshot_content_name(snapshot_uid: str) -> str:
    """Default content name of a snapshot: ``vmsnapshot-content-<snapshot uid>``."""
    return f"vmsnapshot-content-{snapshot_uid}"


def volume_snapshot_name(snapshot_uid: str, volume_name: str) -> str:
    """Name of one volume's copy: ``vmsnapshot-<snapshot uid>-volume-<volume name>``."""
    return f"vmsnapshot-{snapshot_uid}-volume-{volume_name}"


def restore_claim_name(restore_uid: str, volume_name: str) -> str:
    """Claim name under ``RandomizeNames``: ``restore-<restore uid>-<volume name>``."""
    return f"restore-{restore_uid}-{volume_name}"
