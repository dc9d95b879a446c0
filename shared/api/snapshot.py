"""``snapshot.kubevirt.io/v1beta1``: VirtualMachineSnapshot, VirtualMachineSnapshotContent and
VirtualMachineRestore (source: kubevirt.io/api snapshot/v1beta1 types.go; kubevirt-api.md §9).

Words (phases, indications, policies, finalizers, name formats) are in
:mod:`shared.api.snapshot_vocabulary`.
"""

from __future__ import annotations

import msgspec

from shared.api.base import ApiStruct, StrMap
from shared.api.meta import Condition, ObjectMeta
from shared.api.storage import PersistentVolumeClaimSpec, TypedLocalObjectReference
from shared.api.vm import VirtualMachineSpec, VirtualMachineStatus


class SnapshotError(ApiStruct, kw_only=True):
    """``status.error``: when (RFC 3339) and what went wrong."""

    time: str | None = None
    message: str | None = None


class SourceIndication(ApiStruct, kw_only=True):
    """One indication with the sentence that explains it."""

    indication: str
    message: str


class SnapshotVolumesLists(ApiStruct, kw_only=True):
    """Volume names included in and excluded from a snapshot."""

    included_volumes: list[str] | None = None
    excluded_volumes: list[str] | None = None


class VirtualMachineSnapshotSpec(ApiStruct, kw_only=True):
    """``source`` (a VirtualMachine in ``kubevirt.io``), ``deletionPolicy`` (Delete | Retain),
    ``failureDeadline`` (a Go duration string such as ``5m``; ``0s`` = none)."""

    source: TypedLocalObjectReference
    deletion_policy: str | None = None
    failure_deadline: str | None = None


class VirtualMachineSnapshotStatus(ApiStruct, kw_only=True):
    """Progress and result of a snapshot."""

    source_uid: str | None = msgspec.field(default=None, name="sourceUID")
    virtual_machine_snapshot_content_name: str | None = None
    creation_time: str | None = None
    phase: str | None = None
    ready_to_use: bool | None = None
    error: SnapshotError | None = None
    conditions: list[Condition] | None = None
    indications: list[str] | None = None
    source_indications: list[SourceIndication] | None = None
    snapshot_volumes: SnapshotVolumesLists | None = None


class VirtualMachineSnapshot(ApiStruct, kw_only=True):
    """A request to snapshot one VirtualMachine."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineSnapshotSpec
    status: VirtualMachineSnapshotStatus | None = None


class SnapshotVirtualMachine(ApiStruct, kw_only=True):
    """The VM as it was when the snapshot was taken (metadata, spec and status)."""

    metadata: ObjectMeta | None = None
    spec: VirtualMachineSpec | None = None
    status: VirtualMachineStatus | None = None


class SourceSpec(ApiStruct, kw_only=True):
    """``spec.source`` of a content: the copied VM."""

    virtual_machine: SnapshotVirtualMachine | None = None


class SnapshotPersistentVolumeClaim(ApiStruct, kw_only=True):
    """The claim a volume used (metadata and spec), to recreate it on restore."""

    metadata: ObjectMeta | None = None
    spec: PersistentVolumeClaimSpec | None = None


class VolumeBackup(ApiStruct, kw_only=True):
    """One included volume: its name in the VM, its claim, and the name of its copy."""

    volume_name: str
    persistent_volume_claim: SnapshotPersistentVolumeClaim
    volume_snapshot_name: str | None = None


class VirtualMachineSnapshotContentSpec(ApiStruct, kw_only=True):
    """What a snapshot holds."""

    virtual_machine_snapshot_name: str | None = None
    source: SourceSpec
    volume_backups: list[VolumeBackup] | None = None


class ContentVolumeSnapshotStatus(ApiStruct, kw_only=True):
    """``volumeSnapshotStatus[]``, KubeVirt's v1beta1 VolumeSnapshotStatus (renamed here because
    the VM status in shared.api.vm has a VolumeSnapshotStatus of its own): ``creationTime`` once
    the point in time is fixed, ``readyToUse`` once the copy can be restored from."""

    volume_snapshot_name: str
    creation_time: str | None = None
    ready_to_use: bool | None = None
    error: SnapshotError | None = None


class VirtualMachineSnapshotContentStatus(ApiStruct, kw_only=True):
    """Aggregate state of the volume copies."""

    creation_time: str | None = None
    ready_to_use: bool | None = None
    error: SnapshotError | None = None
    volume_snapshot_status: list[ContentVolumeSnapshotStatus] | None = None


class VirtualMachineSnapshotContent(ApiStruct, kw_only=True):
    """The data of a snapshot: the VM copy and one backup per included volume."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineSnapshotContentSpec
    status: VirtualMachineSnapshotContentStatus | None = None


class VolumeRestoreOverride(ApiStruct, kw_only=True):
    """Per-volume name, labels and annotations of a restored claim."""

    volume_name: str | None = None
    restore_name: str | None = None
    labels: StrMap | None = None
    annotations: StrMap | None = None


class VirtualMachineRestoreSpec(ApiStruct, kw_only=True):
    """Restore ``virtualMachineSnapshotName`` into ``target`` (the source VM or a new name)."""

    target: TypedLocalObjectReference
    virtual_machine_snapshot_name: str
    target_readiness_policy: str | None = None
    volume_restore_policy: str | None = None
    volume_ownership_policy: str | None = None
    volume_restore_overrides: list[VolumeRestoreOverride] | None = None
    patches: list[str] | None = None


class VolumeRestore(ApiStruct, kw_only=True):
    """One restored volume: the claim made from which copy."""

    volume_name: str
    persistent_volume_claim_name: str = msgspec.field(name="persistentVolumeClaim")
    volume_snapshot_name: str
    data_volume_name: str | None = None


class VirtualMachineRestoreStatus(ApiStruct, kw_only=True):
    """Progress of a restore (conditions ``Progressing``/``Ready``; no phase)."""

    restores: list[VolumeRestore] | None = None
    restore_time: str | None = None
    deleted_data_volumes: list[str] | None = None
    complete: bool | None = None
    conditions: list[Condition] | None = None


class VirtualMachineRestore(ApiStruct, kw_only=True):
    """A request to restore a VM from a snapshot."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineRestoreSpec
    status: VirtualMachineRestoreStatus | None = None
