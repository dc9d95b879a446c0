"""VMI ``spec.volumes``: a name plus exactly one source (source: kubevirt.io/api core/v1
schema.go; the table in kubevirt-api.md §2)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.api.base import ApiStruct, Object, Quantity, describe
from shared.api.core import LocalObjectReference


class ContainerDiskSource(ApiStruct, kw_only=True):
    """A disk image shipped in a container image; used read-only behind a local overlay."""

    image: Annotated[str, describe("Container image holding the disk (under /disk).")]
    image_pull_secret: str | None = None
    path: str | None = None
    image_pull_policy: str | None = None


class PersistentVolumeClaimVolumeSource(ApiStruct, kw_only=True):
    """A PVC used as disk (``disk.img`` inside a filesystem PVC, or a block device)."""

    claim_name: str
    read_only: bool | None = None
    hotpluggable: bool | None = None


class DataVolumeSource(ApiStruct, kw_only=True):
    """A CDI DataVolume (the VMI waits until it is ready)."""

    name: str | None = None
    hotpluggable: bool | None = None


class EphemeralVolumeSource(ApiStruct, kw_only=True):
    """A PVC used read-only behind a throw-away overlay."""

    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None


class EmptyDiskSource(ApiStruct, kw_only=True):
    """A sparse scratch disk of ``capacity``, discarded at stop."""

    capacity: Quantity


class HostDisk(ApiStruct, kw_only=True):
    """A file on the node (``type`` Disk or DiskOrCreate)."""

    path: str
    type: str
    capacity: Quantity | None = None
    shared: bool | None = None


class CloudInitNoCloudSource(ApiStruct, kw_only=True):
    """cloud-init NoCloud data, served as an ISO labelled ``cidata``."""

    user_data_base64: str | None = None
    user_data: str | None = None
    secret_ref: LocalObjectReference | None = None
    network_data_base64: str | None = None
    network_data: str | None = None
    network_data_secret_ref: LocalObjectReference | None = None


class CloudInitConfigDriveSource(ApiStruct, kw_only=True):
    """cloud-init ConfigDrive data, served as an ISO labelled ``config-2``."""

    user_data_base64: str | None = None
    user_data: str | None = None
    secret_ref: LocalObjectReference | None = None
    network_data_base64: str | None = None
    network_data: str | None = None
    network_data_secret_ref: LocalObjectReference | None = None


class SysprepSource(ApiStruct, kw_only=True):
    """Windows unattend data from a Secret or ConfigMap."""

    secret: LocalObjectReference | None = None
    config_map: LocalObjectReference | None = None


class SecretVolumeSource(ApiStruct, kw_only=True):
    """A Secret presented to the guest as an ISO disk."""

    secret_name: str | None = None
    optional: bool | None = None
    volume_label: str | None = None


class ConfigMapVolumeSource(ApiStruct, kw_only=True):
    """A ConfigMap presented to the guest as an ISO disk."""

    name: str | None = None
    optional: bool | None = None
    volume_label: str | None = None


class DownwardAPIVolumeSource(ApiStruct, kw_only=True):
    """Pod downward API fields presented as an ISO disk."""

    fields: list[Object] | None = None
    volume_label: str | None = None


class ServiceAccountVolumeSource(ApiStruct, kw_only=True):
    """A service account token presented as an ISO disk (at most one)."""

    service_account_name: str | None = None


class DownwardMetricsVolumeSource(ApiStruct, kw_only=True):
    """Host metrics disk for the guest (at most one)."""


class MemoryDumpVolumeSource(ApiStruct, kw_only=True):
    """Target PVC of a memory dump (needs no disk)."""

    claim_name: str
    read_only: bool | None = None
    hotpluggable: bool | None = None


class ContainerPathVolumeSource(ApiStruct, kw_only=True):
    """A path of the launcher container shared through virtiofs."""

    path: str
    read_only: bool | None = None


VOLUME_SOURCE_FIELDS: tuple[str, ...] = (
    "containerDisk",
    "persistentVolumeClaim",
    "dataVolume",
    "ephemeral",
    "emptyDisk",
    "hostDisk",
    "cloudInitNoCloud",
    "cloudInitConfigDrive",
    "sysprep",
    "secret",
    "configMap",
    "downwardAPI",
    "serviceAccount",
    "downwardMetrics",
    "memoryDump",
    "containerPath",
)
"""JSON names of the volume sources; a volume sets exactly one."""


class Volume(ApiStruct, kw_only=True):
    """A named data source; a disk (or filesystem) of the same name exposes it."""

    name: Annotated[str, describe("Volume name; a disk or filesystem refers to it.")]
    container_disk: ContainerDiskSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    data_volume: DataVolumeSource | None = None
    ephemeral: EphemeralVolumeSource | None = None
    empty_disk: EmptyDiskSource | None = None
    host_disk: HostDisk | None = None
    cloud_init_no_cloud: CloudInitNoCloudSource | None = None
    cloud_init_config_drive: CloudInitConfigDriveSource | None = None
    sysprep: SysprepSource | None = None
    secret: SecretVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = msgspec.field(default=None, name="downwardAPI")
    service_account: ServiceAccountVolumeSource | None = None
    downward_metrics: DownwardMetricsVolumeSource | None = None
    memory_dump: MemoryDumpVolumeSource | None = None
    container_path: ContainerPathVolumeSource | None = None
