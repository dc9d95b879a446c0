"""What the local provisioner does with one PersistentVolumeClaim (pure).

The embedded installation has no CSI driver; a claim is backed by a qcow2 file at
``<pvc-root>/<namespace>/<claim>/disk.img`` (docs: snapshot-design "Local provisioner"). The rules
follow Kubernetes' external-provisioner and the storage-object-in-use protection controller:

- first sight of a claim: finalizer ``kubernetes.io/pvc-protection`` added (the protection
  admission plugin does this on a cluster);
- a Pending claim (``status.phase`` unset or Pending) whose ``storageClassName`` is unset or
  ``local`` and whose ``volumeMode`` is Filesystem (or unset) is provisioned with the capacity of
  ``spec.resources.requests.storage``; a ``dataSource`` VolumeSnapshot fills it from the copy
  ``<volume-snapshots>/<namespace>/<name>.qcow2``;
- a claim asking for an access mode a node-local disk cannot give (``ReadWriteMany``,
  ``ReadOnlyMany``), for more than a qcow2 can hold (2 PiB with qemu-img's default 64 KiB
  clusters) or for more than the storage directory has free stays Pending too (a small local
  provisioner with capacity and access modes, as issue 11 asks; the capacity check is the
  CSI ``GetCapacity`` idea applied to one directory);
- anything else stays Pending with a Warning ``ProvisioningFailed`` (external-provisioner's
  reason) and a message in kube's wording (``storageclass.storage.k8s.io "<x>" not found``);
- a claim being deleted keeps its finalizer while a VMI that is not final uses it; then its files
  are removed and the finalizer dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.api.quantity import QuantityError, format_bytes, to_bytes
from shared.api.storage import PVC_PROTECTION_FINALIZER, ClaimPhase, PersistentVolumeClaim

LOCAL_STORAGE_CLASS = "local"
"""The embedded installation's one storage class (also used when ``storageClassName`` is unset)."""

VOLUME_SNAPSHOT_KIND = "VolumeSnapshot"
VOLUME_SNAPSHOT_GROUP = "snapshot.storage.k8s.io"

#: external-provisioner's Event reasons (sig-storage-lib-external-provisioner controller.go)
PROVISIONING_FAILED = "ProvisioningFailed"
PROVISIONING_SUCCEEDED = "ProvisioningSucceeded"

FILESYSTEM_ONLY_MESSAGE = "local provisioner supports Filesystem only"
MISSING_SIZE_MESSAGE = "spec.resources.requests.storage: Required value"

#: the access modes a node-local disk can honour (Kubernetes' names)
SUPPORTED_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod")

QCOW2_MAX_BYTES = 2**51
"""The largest virtual size ``qemu-img create -f qcow2`` makes with its default 64 KiB clusters
(32 MiB of L1 table, each entry mapping 512 MiB); larger fails with "too large for file format"."""


def unsupported_access_modes_message(modes: list[str]) -> str:
    """Why a claim asking for ``modes`` (those not supported) is refused."""
    return (f"local provisioner gives node-local disks: access modes {', '.join(modes)} not supported "
            f"(supported: {', '.join(SUPPORTED_ACCESS_MODES)})")


def too_large_message(requested: str, size: int) -> str:
    """Why a claim larger than a qcow2 can be is refused."""
    return (f"requested storage {requested} ({size} bytes) is larger than the local provisioner's "
            f"maximum of {format_bytes(QCOW2_MAX_BYTES)}")


def insufficient_capacity_message(requested: str, free_bytes: int) -> str:
    """Why a claim larger than the storage directory's free space is refused."""
    return (f"insufficient capacity: requested storage {requested} but the local storage directory "
            f"has {format_bytes(free_bytes)} free")


def storage_class_not_found(name: str) -> str:
    """kube-apiserver's NotFound text for a StorageClass."""
    return f'storageclass.storage.k8s.io "{name}" not found'


def volume_snapshot_not_found(name: str) -> str:
    """kube-apiserver's NotFound text for a VolumeSnapshot (the copy file is missing)."""
    return f'volumesnapshots.snapshot.storage.k8s.io "{name}" not found'


def succeeded_message(volume_name: str) -> str:
    """external-provisioner's ProvisioningSucceeded message."""
    return f"Successfully provisioned volume {volume_name}"


def volume_name_of(uid: str) -> str:
    """``spec.volumeName`` of a provisioned claim: ``pvc-<claim uid>`` (Kubernetes' PV naming)."""
    return f"pvc-{uid}"


class ProvisionStep(StrEnum):
    """The one thing to do next for a claim."""

    NOTHING = "Nothing"
    ADD_FINALIZER = "AddFinalizer"
    REFUSE = "Refuse"            # stay Pending, Warning event with ``message``
    PROVISION = "Provision"      # make the file, then bind
    BIND = "Bind"                # the file is there: write volumeName / status Bound
    WAIT_IN_USE = "WaitInUse"    # being deleted but a running VMI uses it
    RELEASE = "Release"          # being deleted and unused: remove files, drop the finalizer


@dataclass(frozen=True)
class ProvisionDecision:
    """``step`` plus what it needs: ``message`` for REFUSE, ``size_bytes`` and ``source_copy``
    (the VolumeSnapshot name, or None for an empty disk) for PROVISION/BIND."""

    step: ProvisionStep
    message: str = ""
    size_bytes: int = 0
    source_copy: str | None = None


def requested_bytes(pvc: PersistentVolumeClaim) -> int | None:
    """``spec.resources.requests.storage`` in bytes; None when missing, malformed or not positive."""
    requests = pvc.spec.resources.requests if pvc.spec.resources is not None else None
    value = (requests or {}).get("storage")
    if value is None:
        return None
    try:
        size = to_bytes(value)
    except QuantityError:
        return None
    return size if size > 0 else None


def source_copy_of(pvc: PersistentVolumeClaim) -> str | None:
    """The VolumeSnapshot name of ``spec.dataSource`` (None without a VolumeSnapshot source)."""
    source = pvc.spec.data_source
    if source is None or source.kind != VOLUME_SNAPSHOT_KIND:
        return None
    return source.name


def compute_provision(pvc: PersistentVolumeClaim, *, in_use: bool, copy_exists: bool,
                      disk_exists: bool, free_bytes: int | None = None) -> ProvisionDecision:
    """The next step for ``pvc``.

    Args:
        pvc: the claim as cached.
        in_use: a VMI that is not final has a volume using this claim.
        copy_exists: the complete copy named by ``spec.dataSource`` exists (ignored without one).
        disk_exists: ``disk.img`` (complete) exists and was made for this claim (its ``claim-uid``
            marker names ``pvc``'s uid); a leftover of another claim does not count.
        free_bytes: free space of the storage directory in bytes (None: unknown, not checked).
    """
    meta = pvc.metadata
    finalizers = (meta.finalizers if meta is not None else None) or []
    if meta is not None and meta.deletion_timestamp:
        if PVC_PROTECTION_FINALIZER not in finalizers:
            return ProvisionDecision(ProvisionStep.NOTHING)
        if in_use:
            return ProvisionDecision(ProvisionStep.WAIT_IN_USE)
        return ProvisionDecision(ProvisionStep.RELEASE)
    if PVC_PROTECTION_FINALIZER not in finalizers:
        return ProvisionDecision(ProvisionStep.ADD_FINALIZER)
    phase = pvc.status.phase if pvc.status is not None else None
    if phase not in (None, "", ClaimPhase.PENDING):
        return ProvisionDecision(ProvisionStep.NOTHING)
    storage_class = pvc.spec.storage_class_name
    if storage_class not in (None, "", LOCAL_STORAGE_CLASS):
        return ProvisionDecision(ProvisionStep.REFUSE, storage_class_not_found(storage_class))
    if pvc.spec.volume_mode not in (None, "", "Filesystem"):
        return ProvisionDecision(ProvisionStep.REFUSE, FILESYSTEM_ONLY_MESSAGE)
    unsupported = [m for m in pvc.spec.access_modes or [] if m not in SUPPORTED_ACCESS_MODES]
    if unsupported:
        return ProvisionDecision(ProvisionStep.REFUSE, unsupported_access_modes_message(unsupported))
    size = requested_bytes(pvc)
    if size is None:
        return ProvisionDecision(ProvisionStep.REFUSE, MISSING_SIZE_MESSAGE)
    source = source_copy_of(pvc)
    if disk_exists:
        return ProvisionDecision(ProvisionStep.BIND, size_bytes=size, source_copy=source)
    requested = str(((pvc.spec.resources.requests if pvc.spec.resources else None) or {}).get("storage"))
    if size > QCOW2_MAX_BYTES:
        return ProvisionDecision(ProvisionStep.REFUSE, too_large_message(requested, size))
    if free_bytes is not None and size > free_bytes:
        return ProvisionDecision(ProvisionStep.REFUSE, insufficient_capacity_message(requested, free_bytes))
    if source is not None and not copy_exists:
        return ProvisionDecision(ProvisionStep.REFUSE, volume_snapshot_not_found(source))
    return ProvisionDecision(ProvisionStep.PROVISION, size_bytes=size, source_copy=source)
