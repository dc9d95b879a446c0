"""Core ``v1`` PersistentVolumeClaim, as served by the embedded installation (its local
provisioner backs each claim with a qcow2 file) and as read on a Kubernetes cluster.

Source: k8s.io/api core/v1 types.go (PersistentVolumeClaim, PersistentVolumeClaimSpec,
PersistentVolumeClaimStatus, TypedLocalObjectReference). Only the fields this project reads are
typed; the rest are kept as given.
"""

from __future__ import annotations

from enum import StrEnum

from shared.api.base import ApiStruct, Object, Quantity
from shared.api.meta import LabelSelector, ObjectMeta


class ClaimPhase(StrEnum):
    """``PersistentVolumeClaim.status.phase``."""

    PENDING = "Pending"
    BOUND = "Bound"
    LOST = "Lost"


class AccessMode(StrEnum):
    """``spec.accessModes`` entries."""

    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
"""Kept on a claim while a VMI that is not final uses it (Kubernetes' storage-object-in-use protection)."""


class TypedLocalObjectReference(ApiStruct, kw_only=True):
    """A reference to an object of ``kind`` in ``apiGroup`` in the same namespace."""

    api_group: str | None = None
    kind: str
    name: str


class TypedObjectReference(ApiStruct, kw_only=True):
    """``dataSourceRef``: as above, with an optional namespace."""

    api_group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class VolumeResourceRequirements(ApiStruct, kw_only=True):
    """``spec.resources``: ``requests.storage`` is the size asked for."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class PersistentVolumeClaimSpec(ApiStruct, kw_only=True):
    """What a claim asks for; ``dataSource`` (a VolumeSnapshot) pre-fills it from a snapshot."""

    access_modes: list[str] | None = None
    selector: LabelSelector | None = None
    resources: VolumeResourceRequirements | None = None
    volume_name: str | None = None
    storage_class_name: str | None = None
    volume_mode: str | None = None
    data_source: TypedLocalObjectReference | None = None
    data_source_ref: TypedObjectReference | None = None
    volume_attributes_class_name: str | None = None


class PersistentVolumeClaimStatus(ApiStruct, kw_only=True):
    """What the provisioner made: phase, granted access modes and capacity."""

    phase: str | None = None
    access_modes: list[str] | None = None
    capacity: dict[str, Quantity] | None = None
    conditions: list[Object] | None = None
    allocated_resources: dict[str, Quantity] | None = None


class PersistentVolumeClaim(ApiStruct, kw_only=True):
    """A request for storage a VM can use as a ``persistentVolumeClaim`` volume."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: PersistentVolumeClaimSpec
    status: PersistentVolumeClaimStatus | None = None
