"""The local provisioner: PersistentVolumeClaims of the embedded installation become qcow2 files.

One work-queue key per claim (``namespace/name``). Each reconcile asks
:func:`services.virt_snapshot.provisioner_decision.compute_provision` for the next step and does
it: the finalizer ``kubernetes.io/pvc-protection`` (CAS update), the file
(:mod:`services.virt_snapshot.local_volumes`, ``.part`` then rename), ``spec.volumeName`` (CAS
update) and ``status`` Bound with capacity and access modes (CAS on ``/status``), Events
``ProvisioningSucceeded`` / Warning ``ProvisioningFailed``; on deletion the claim's directory is
removed once no VMI that is not final uses it, then the finalizer goes (and the store drops the
claim). Every step reads the cache and the disk again, so a new leader continues where an old
one stopped. A reconcile runs in a span ``reconcile PersistentVolumeClaim`` joined to the trace
recorded on the claim (virt-api's create, or the restore that created it), the file work in a
child span ``copy <volume snapshot>`` or ``create disk``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.virt_snapshot import local_volumes
from services.virt_snapshot.provisioner_decision import (
    PROVISIONING_FAILED,
    PROVISIONING_SUCCEEDED,
    ProvisionStep,
    compute_provision,
    source_copy_of,
    succeeded_message,
    volume_name_of,
)
from shared import tracing
from shared.api.decoding import encode_object
from shared.api.quantity import format_bytes
from shared.api.storage import PVC_PROTECTION_FINALIZER, ClaimPhase, PersistentVolumeClaim
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import EventType, is_final_phase, object_key, split_key
from shared.errors import NotFound
from shared.events_recorder import EventRecorder
from shared.informer import Informer, key_of
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

PVCS = "persistentvolumeclaims"
SERVICE = "virt-snapshot"
SPAN_NAME = "reconcile PersistentVolumeClaim"
#: seconds before a claim waiting for its source copy is looked at again
MISSING_COPY_RETRY = 5.0


def claim_body(pvc: PersistentVolumeClaim) -> dict[str, Any]:
    """``pvc`` as the store's dict with ``apiVersion: v1``/``kind`` (for writes and Events)."""
    return {**encode_object(pvc), "apiVersion": "v1", "kind": "PersistentVolumeClaim"}


def claims_of(vmi: VirtualMachineInstance | None) -> set[str]:
    """Names of the claims a VMI's volumes use (``persistentVolumeClaim`` and ``dataVolume``)."""
    names: set[str] = set()
    for volume in (vmi.spec.volumes if vmi is not None and vmi.spec is not None else None) or []:
        if volume.persistent_volume_claim is not None:
            names.add(volume.persistent_volume_claim.claim_name)
        elif volume.data_volume is not None and volume.data_volume.name:
            names.add(volume.data_volume.name)
    return names


class ProvisionerController:
    """Provisions, binds and releases claims.

    Args:
        store: ObjectStore.
        pvcs: typed informer of ``persistentvolumeclaims``.
        vmis: typed informer of ``virtualmachineinstances`` (who uses a claim).
        recorder: EventRecorder (component ``virt-snapshot``).
        pvc_root: ``<storage-dir>/pvcs``.
        copies_dir: ``<storage-dir>/volume-snapshots``.
    """

    def __init__(self, store: Any, pvcs: Informer[PersistentVolumeClaim], vmis: Informer[VirtualMachineInstance],
                 recorder: EventRecorder, *, pvc_root: Path, copies_dir: Path) -> None:
        self.store = store
        self.pvcs = pvcs
        self.vmis = vmis
        self.recorder = recorder
        self.pvc_root = Path(pvc_root)
        self.copies_dir = Path(copies_dir)
        self.queue = WorkQueue(name="virt-snapshot-provisioner")
        self._refused: set[tuple[str, str]] = set()  # (uid, message) already told
        pvcs.add_handler(lambda old, new: self.queue.add(key_of(new if new is not None else old)))
        vmis.add_handler(self._on_vmi)

    @classmethod
    def from_parts(cls, parts: Any) -> ProvisionerController:
        """Built on the manager's :class:`services.virt_snapshot.parts.SnapshotParts`."""
        return cls(parts.store, parts.pvcs, parts.vmis, parts.recorder, pvc_root=parts.pvc_root,
                   copies_dir=parts.copies_dir)

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        vmi = new if new is not None else old
        namespace = vmi.metadata.namespace if vmi is not None and vmi.metadata is not None else None
        for name in claims_of(old) | claims_of(new):
            self.queue.add(object_key(namespace, name))

    def enqueue_all(self) -> None:
        """Queue every cached claim (a new leader's first pass)."""
        for key in self.pvcs.keys():
            self.queue.add(key)

    def in_use(self, namespace: str | None, name: str) -> bool:
        """Whether a VMI that is not final in ``namespace`` uses claim ``name``."""
        for vmi in self.vmis.items():
            if vmi.metadata is None or vmi.metadata.namespace != namespace:
                continue
            if is_final_phase(vmi.status.phase if vmi.status is not None else None):
                continue
            if name in claims_of(vmi):
                return True
        return False

    def traced_object(self, key: str) -> tuple[str, Mapping[str, Any], str | None] | None:
        """The span of a reconcile of ``key`` (the manager opens it): joined to the claim's trace."""
        pvc = self.pvcs.get(key)
        return (SPAN_NAME, claim_body(pvc), None) if pvc is not None else None

    async def reconcile(self, key: str) -> None:
        """Do the next step for claim ``key``. Raises Conflict (requeued by the worker) or
        :class:`local_volumes.VolumeFileError` (retried with backoff)."""
        pvc = self.pvcs.get(key)
        if pvc is None or pvc.metadata is None:
            return
        namespace, name = split_key(key)
        namespace = namespace or ""
        disk = local_volumes.claim_disk(self.pvc_root, namespace, name)
        source = source_copy_of(pvc)
        copy = local_volumes.copy_path(self.copies_dir, namespace, source) if source else None
        uid = pvc.metadata.uid or ""
        decision = compute_provision(pvc, in_use=self.in_use(namespace, name),
                                     copy_exists=copy is not None and copy.exists(),
                                     disk_exists=local_volumes.owned_disk_exists(disk, uid),
                                     free_bytes=local_volumes.free_bytes(self.pvc_root))
        step = decision.step
        if step == ProvisionStep.ADD_FINALIZER:
            body = claim_body(pvc)
            body["metadata"]["finalizers"] = [*(pvc.metadata.finalizers or []), PVC_PROTECTION_FINALIZER]
            await self._write(pvc, body)
        elif step == ProvisionStep.REFUSE:
            await self._refuse(pvc, decision.message)
            if source is not None:
                self.queue.add_after(key, MISSING_COPY_RETRY)
        elif step == ProvisionStep.PROVISION:
            if copy is not None:
                with tracing.child_span(SERVICE, f"copy {source}", attributes={"kubevirt.claim": name}):
                    await local_volumes.copy_disk(copy, disk, decision.size_bytes, owner_uid=uid)
            else:
                with tracing.child_span(SERVICE, "create disk", attributes={"kubevirt.claim": name}):
                    await local_volumes.create_disk(disk, decision.size_bytes, owner_uid=uid)
            await self._bind(pvc, disk)
        elif step == ProvisionStep.BIND:
            await self._bind(pvc, disk)
        elif step == ProvisionStep.RELEASE:
            await local_volumes.remove_claim(self.pvc_root, namespace, name)
            body = claim_body(pvc)
            body["metadata"]["finalizers"] = [f for f in pvc.metadata.finalizers or [] if f != PVC_PROTECTION_FINALIZER]
            await self._write(pvc, body)

    async def _write(self, pvc: PersistentVolumeClaim, body: dict[str, Any], *,
                     subresource: str | None = None) -> PersistentVolumeClaim | None:
        try:
            stored = await self.store.update(PVCS, body, subresource=subresource)
        except NotFound:
            self.pvcs.assume_deleted(pvc)
            return None
        self.pvcs.assume_written(pvc, stored)
        return self.pvcs.decode(stored)

    async def _refuse(self, pvc: PersistentVolumeClaim, message: str) -> None:
        if pvc.status is None or not pvc.status.phase:
            body = claim_body(pvc)
            body["status"] = {**(body.get("status") or {}), "phase": ClaimPhase.PENDING.value}
            stored = await self._write(pvc, body, subresource="status")
            pvc = stored or pvc
        told = ((pvc.metadata.uid if pvc.metadata else "") or "", message)
        if told not in self._refused:
            self._refused.add(told)
            await self.recorder.record(claim_body(pvc), EventType.WARNING, PROVISIONING_FAILED, message)

    async def _bind(self, pvc: PersistentVolumeClaim, disk: Path) -> None:
        uid = (pvc.metadata.uid if pvc.metadata else None) or ""
        volume = volume_name_of(uid)
        if pvc.spec.volume_name != volume:
            body = claim_body(pvc)
            body["spec"]["volumeName"] = volume
            stored = await self._write(pvc, body)
            if stored is None:
                return
            pvc = stored
        size = await local_volumes.virtual_size(disk)
        body = claim_body(pvc)
        body["status"] = {**(body.get("status") or {}), "phase": ClaimPhase.BOUND.value,
                          "accessModes": list(pvc.spec.access_modes or []), "capacity": {"storage": format_bytes(size)}}
        if await self._write(pvc, body, subresource="status") is not None:
            await self.recorder.record(claim_body(pvc), EventType.NORMAL, PROVISIONING_SUCCEEDED,
                                       succeeded_message(volume))
