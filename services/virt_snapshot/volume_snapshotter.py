"""The VolumeSnapshotter interface: how virt-snapshot makes point-in-time copies of a VM's claims.

Two implementations stand behind it (docs/snapshot-restore.md): the embedded one
(:mod:`services.virt_snapshot.embedded_snapshotter`, qcow2 copies in the state directory) and the
CSI one (:mod:`services.virt_snapshot.csi_snapshotter`, ``snapshot.storage.k8s.io/v1``
VolumeSnapshot objects on a Kubernetes cluster). The content controller uses only this module.

The restore controller uses its claim half, :class:`RestoredClaims`: where the claims restored from
the copies are created, read and deleted — in kubevirt-py's store, where the local provisioner
binds them (embedded), or in the cluster, where the CSI driver provisions them from the
VolumeSnapshot (CSI).

Every method is idempotent by ``request.snapshot_uid`` / the copy names / the claim names, so a
new leader can repeat what an old one started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.api.storage import TypedLocalObjectReference

VOLUME_SNAPSHOT_API_GROUP = "snapshot.storage.k8s.io"
VOLUME_SNAPSHOT_KIND = "VolumeSnapshot"


class SnapshotterError(Exception):
    """A copy could not be started or went wrong: ``message`` for the content's error,
    ``retryable`` False when trying again cannot help (the snapshot should fail)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class VolumeRequest:
    """One volume to copy: its name in the VM, its claim, and the name of its copy."""

    volume_name: str
    claim_name: str
    volume_snapshot_name: str


@dataclass(frozen=True)
class SnapshotRequest:
    """All volumes of one snapshot (copied at one point in time).

    ``node``/``vmi_name``/``vmi_uid`` are set when the VM runs (the copy then goes through that
    node's virt-handler); None when it does not (the claims' files are copied directly)."""

    namespace: str
    snapshot_uid: str
    vm_name: str
    volumes: list[VolumeRequest] = field(default_factory=list)
    node: str | None = None
    vmi_name: str | None = None
    vmi_uid: str | None = None


@dataclass(frozen=True)
class CopyStatus:
    """Where one copy stands: ``ready`` once it can be restored from; ``error`` when it failed
    (then it will not become ready); bytes copied so far of ``total_bytes`` (0 when unknown)."""

    volume_snapshot_name: str
    ready: bool
    error: str | None = None
    processed_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True)
class ClaimState:
    """What the restore controller reads of a claim: ``status.phase`` (None while unset) and
    ``metadata.annotations`` (the restore's ``restore.kubevirt.io/lastRestoreUID`` marks a claim
    it made)."""

    phase: str | None
    annotations: Mapping[str, str] = field(default_factory=dict)


class RestoredClaims(Protocol):
    """The claims a restore makes from the copies (KubeVirt's restore.go creates them with the
    Kubernetes client; here the VolumeSnapshotter knows where claims live).

    ``claim_poll_interval``: seconds after which the restore controller looks again at claims
    that are not Bound yet; None when claim changes reach it as informer events (embedded)."""

    claim_poll_interval: float | None

    def claim_data_source(self, volume_snapshot_name: str) -> TypedLocalObjectReference:
        """The ``spec.dataSource`` of a claim restored from that copy."""
        ...

    async def read_claim(self, namespace: str, name: str) -> ClaimState | None:
        """The claim's :class:`ClaimState`; None when it does not exist. Raises :class:`SnapshotterError`."""
        ...

    async def create_claim(self, body: dict[str, Any]) -> None:
        """Create a restored claim (a ``v1`` PersistentVolumeClaim as a dict, namespace in its
        metadata); one that exists already is left as it is. Raises :class:`SnapshotterError`."""
        ...

    async def delete_claim(self, namespace: str, name: str) -> None:
        """Delete a claim (InPlace restores); one already gone is fine. Raises :class:`SnapshotterError`."""
        ...


class VolumeSnapshotter(RestoredClaims, Protocol):
    """Point-in-time copies of claims, and the claims restored from them (see the module docstring)."""

    async def begin(self, request: SnapshotRequest) -> str:
        """Fix the point in time of all ``request.volumes`` at once and start their copies;
        returns that time (RFC 3339). Idempotent by ``request.snapshot_uid``. Raises
        :class:`SnapshotterError`."""
        ...

    async def poll(self, request: SnapshotRequest) -> list[CopyStatus]:
        """One :class:`CopyStatus` per volume of ``request`` (in its order)."""
        ...

    async def cancel(self, request: SnapshotRequest) -> None:
        """Abort running copies of ``request`` and drop their partial files."""
        ...

    async def delete(self, namespace: str, volume_snapshot_names: list[str]) -> None:
        """Remove the copies (complete or not); missing ones are fine."""
        ...


def volume_snapshot_reference(volume_snapshot_name: str) -> TypedLocalObjectReference:
    """``{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name}`` (both implementations'
    :meth:`VolumeSnapshotter.claim_data_source`; Kubernetes' dataSource of a claim from a snapshot)."""
    return TypedLocalObjectReference(api_group=VOLUME_SNAPSHOT_API_GROUP, kind=VOLUME_SNAPSHOT_KIND,
                                     name=volume_snapshot_name)
