"""The VirtualMachineSnapshotContent: how it is made from a snapshot and its VM, which step it is
at, and its status from the copies (pure).

KubeVirt ``pkg/storage/snapshot/snapshot.go`` createContent (owner reference, the VM's simplified
metadata/spec/status, one volume backup per included claim named
``vmsnapshot-<snapshot uid>-volume-<volume>``) and updateVMSnapshotContent (the error messages
"VolumeSnapshot X error: ...", readyToUse once every copy is ready, creationTime once every copy
has one).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from msgspec.structs import replace

from services.virt_snapshot.indications import SourceState
from services.virt_snapshot.volume_snapshotter import CopyStatus, SnapshotRequest, VolumeRequest
from shared.api.meta import ObjectMeta, OwnerReference
from shared.api.snapshot import (
    ContentVolumeSnapshotStatus,
    SnapshotError,
    SnapshotPersistentVolumeClaim,
    SnapshotVirtualMachine,
    SourceSpec,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotContent,
    VirtualMachineSnapshotContentSpec,
    VirtualMachineSnapshotContentStatus,
    VolumeBackup,
)
from shared.api.snapshot_vocabulary import (
    SNAPSHOT_API_VERSION,
    SNAPSHOT_CONTENT_FINALIZER,
    Indication,
    snapshot_content_name,
    volume_snapshot_name,
)
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine


class ContentStep(StrEnum):
    """What the content controller does next with a content."""

    CLEANUP = "Cleanup"        # being deleted: thaw, abort copies, delete copies, drop the finalizer
    ABANDON = "Abandon"        # its snapshot is gone or terminating: thaw, abort unfinished copies
    BEGIN = "Begin"            # no creationTime yet: freeze, begin the copies, record the time, thaw
    POLL = "Poll"              # creationTime set, not ready: poll the copies
    DONE = "Done"              # ready (or failed for good): make sure the guest is thawed


def _simplified_meta(meta: ObjectMeta | None) -> ObjectMeta | None:
    if meta is None:
        return None
    return ObjectMeta(name=meta.name, namespace=meta.namespace, uid=meta.uid, labels=meta.labels,
                      annotations=meta.annotations, generation=meta.generation,
                      resource_version=meta.resource_version, creation_timestamp=meta.creation_timestamp,
                      finalizers=meta.finalizers)


def compute_content(snapshot: VirtualMachineSnapshot, vm: VirtualMachine, state: SourceState,
                    claims: Mapping[str, PersistentVolumeClaim]) -> VirtualMachineSnapshotContent:
    """The content to create for ``snapshot`` of ``vm`` with the included volumes of ``state``."""
    meta = snapshot.metadata or ObjectMeta()
    uid = meta.uid or ""
    backups: list[VolumeBackup] = []
    for volume in state.included:
        claim = claims.get(volume.claim_name)
        backups.append(VolumeBackup(
            volume_name=volume.volume_name, volume_snapshot_name=volume_snapshot_name(uid, volume.volume_name),
            persistent_volume_claim=SnapshotPersistentVolumeClaim(
                metadata=_simplified_meta(claim.metadata if claim else ObjectMeta(name=volume.claim_name)),
                spec=claim.spec if claim else None)))
    source = SnapshotVirtualMachine(metadata=_simplified_meta(vm.metadata), spec=vm.spec, status=vm.status)
    owner = OwnerReference(api_version=SNAPSHOT_API_VERSION, kind="VirtualMachineSnapshot", name=meta.name or "",
                           uid=uid, controller=True, block_owner_deletion=True)
    return VirtualMachineSnapshotContent(
        api_version=SNAPSHOT_API_VERSION, kind="VirtualMachineSnapshotContent",
        metadata=ObjectMeta(name=snapshot_content_name(uid), namespace=meta.namespace,
                            finalizers=[SNAPSHOT_CONTENT_FINALIZER], owner_references=[owner]),
        spec=VirtualMachineSnapshotContentSpec(virtual_machine_snapshot_name=meta.name,
                                               source=SourceSpec(virtual_machine=source),
                                               volume_backups=backups or None))


def is_online_snapshot(snapshot: VirtualMachineSnapshot | None) -> bool:
    """The snapshot was taken of a running VM (indication Online)."""
    return snapshot is not None and Indication.ONLINE in ((snapshot.status.indications if snapshot.status else None)
                                                          or [])


def needs_freeze(snapshot: VirtualMachineSnapshot | None) -> bool:
    """The guest is frozen around the point in time (indication GuestAgent, KubeVirt's Freeze)."""
    return snapshot is not None and Indication.GUEST_AGENT in (
        (snapshot.status.indications if snapshot.status else None) or [])


class BeginAction(StrEnum):
    """How the Begin step fixes the point in time."""

    FREEZE_THEN_COPY = "FreezeThenCopy"  # Freeze must answer ok before the copy begins
    COPY = "Copy"                        # no quiescing asked (or the guest no longer runs)


def begin_action(snapshot: VirtualMachineSnapshot | None, state: SourceState | None) -> BeginAction:
    """Whether Begin freezes first. With indication ``GuestAgent`` and a running VMI the Freeze
    is sent on every attempt, whatever the VMI's ``fsFreezeStatus`` says: the handler reports
    ``frozen`` while a deadline is armed, also after a Freeze that timed out in the agent, so that
    status is no proof the guest is quiesced (KubeVirt: a failed freeze is retried and the copy
    is not started unfrozen). The handler's Freeze is idempotent."""
    if needs_freeze(snapshot) and state is not None and state.online:
        return BeginAction.FREEZE_THEN_COPY
    return BeginAction.COPY


def compute_request(content: VirtualMachineSnapshotContent, snapshot: VirtualMachineSnapshot | None,
                    state: SourceState | None) -> SnapshotRequest:
    """The VolumeSnapshotter request of ``content``: its volumes, and the VMI's node when the
    snapshot is online and the VMI still runs."""
    meta = content.metadata or ObjectMeta()
    owner_uid = next((o.uid for o in meta.owner_references or [] if o.kind == "VirtualMachineSnapshot"), None)
    snapshot_uid = (snapshot.metadata.uid if snapshot and snapshot.metadata else None) or owner_uid or ""
    vm_meta = content.spec.source.virtual_machine.metadata if content.spec.source.virtual_machine else None
    volumes = [VolumeRequest(volume_name=b.volume_name,
                             claim_name=(b.persistent_volume_claim.metadata.name or "")
                             if b.persistent_volume_claim.metadata else "",
                             volume_snapshot_name=b.volume_snapshot_name or "")
               for b in content.spec.volume_backups or [] if b.volume_snapshot_name]
    online = is_online_snapshot(snapshot) and state is not None and state.online
    return SnapshotRequest(namespace=meta.namespace or "", snapshot_uid=snapshot_uid,
                           vm_name=(vm_meta.name if vm_meta else None) or "", volumes=volumes,
                           node=state.node if online and state else None,
                           vmi_name=state.vmi_name if online and state else None,
                           vmi_uid=state.vmi_uid if online and state else None)


FIRST_POLL_DELAY = 0.1
"""Seconds before the first look at copies that are not complete yet; each further look waits
twice as long, up to :data:`MAX_POLL_DELAY` (a copy of a small or sparse volume is done in a
fraction of a second; a big one is not worth a look more than once a second)."""
MAX_POLL_DELAY = 1.0


def compute_poll_delay(polls: int) -> float:
    """Seconds to wait after the ``polls``-th look (1-based) at unfinished copies."""
    return min(FIRST_POLL_DELAY * 2.0 ** max(polls - 1, 0), MAX_POLL_DELAY)


def content_step(content: VirtualMachineSnapshotContent, snapshot: VirtualMachineSnapshot | None,
                 snapshot_terminating: bool) -> ContentStep:
    """Which :class:`ContentStep` ``content`` is at."""
    if content.metadata is not None and content.metadata.deletion_timestamp is not None:
        return ContentStep.CLEANUP
    status = content.status
    ready = status is not None and bool(status.ready_to_use)
    if snapshot is None or snapshot_terminating:
        return ContentStep.DONE if ready else ContentStep.ABANDON
    if status is None or status.creation_time is None:
        return ContentStep.BEGIN
    return ContentStep.DONE if ready else ContentStep.POLL


def compute_created_status(content: VirtualMachineSnapshotContent, creation_time: str) -> \
        VirtualMachineSnapshotContentStatus:
    """The content status once the point in time is fixed: ``creationTime`` on the content and
    every copy, nothing ready yet."""
    return VirtualMachineSnapshotContentStatus(
        creation_time=creation_time, ready_to_use=False,
        volume_snapshot_status=[ContentVolumeSnapshotStatus(volume_snapshot_name=b.volume_snapshot_name,
                                                            creation_time=creation_time, ready_to_use=False)
                                for b in content.spec.volume_backups or [] if b.volume_snapshot_name] or None)


def compute_begin_error(content: VirtualMachineSnapshotContent, message: str, now: str) -> \
        VirtualMachineSnapshotContentStatus:
    """The content status after a failed freeze or begin (KubeVirt: error, readyToUse false, retry)."""
    status = content.status or VirtualMachineSnapshotContentStatus()
    if status.error is not None and status.error.message == message:
        return replace(status, ready_to_use=False)
    return replace(status, ready_to_use=False, error=SnapshotError(time=now, message=message))


def compute_polled_status(content: VirtualMachineSnapshotContent, copies: list[CopyStatus],
                          now: str) -> VirtualMachineSnapshotContentStatus:
    """The content status from the copies' states: each copy's readyToUse and error, the content
    ready once all are, its error the first copy's ("VolumeSnapshot <name> error: <message>")."""
    status = content.status or VirtualMachineSnapshotContentStatus()
    by_name = {c.volume_snapshot_name: c for c in copies}
    previous = {s.volume_snapshot_name: s for s in status.volume_snapshot_status or []}
    entries: list[ContentVolumeSnapshotStatus] = []
    ready, message = True, ""
    for backup in content.spec.volume_backups or []:
        name = backup.volume_snapshot_name
        if not name:
            continue
        copy = by_name.get(name)
        old = previous.get(name)
        copy_ready = copy is not None and copy.ready
        error = None
        if copy is not None and copy.error:
            same = old is not None and old.error is not None and old.error.message == copy.error
            error = old.error if same and old is not None else SnapshotError(time=now, message=copy.error)
            if not message:
                message = f"VolumeSnapshot {name} error: {copy.error}"
        ready = ready and copy_ready
        entries.append(ContentVolumeSnapshotStatus(volume_snapshot_name=name,
                                                   creation_time=old.creation_time if old else status.creation_time,
                                                   ready_to_use=copy_ready, error=error))
    if message and not ready:
        error = status.error if status.error is not None and status.error.message == message else SnapshotError(
            time=now, message=message)
    else:
        error = None
    return replace(status, ready_to_use=ready, error=error, volume_snapshot_status=entries or None)
