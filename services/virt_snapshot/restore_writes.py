"""The store edge of the restore controller: CAS writes of restores, VMs and claim ownership.

(Restored claims are created and deleted by the VolumeSnapshotter's claim half:
:mod:`services.virt_snapshot.store_claims` on the embedded installation.)

Each write takes the object as last read (a Struct from an informer), changes only the fields the
restore controller owns, writes with its resourceVersion (Conflict propagates: the worker
requeues and the reconcile decides again on the fresh cache) and folds the stored answer into the
informer cache (read-your-writes). Creating an object that exists (AlreadyExists) and deleting
one that is gone (NotFound) are success: a new leader repeats steps an old one did.
"""

from __future__ import annotations

from typing import Any

from shared.api.decoding import encode_object
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineRestoreStatus
from shared.api.snapshot_vocabulary import RESTORE_FINALIZER, RESTORE_OWNED_BY_VM_LABEL, SNAPSHOT_API_VERSION
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.errors import AlreadyExists, NotFound
from shared.informer import Informer

VMS = "virtualmachines"
RESTORES = "virtualmachinerestores"
PVCS = "persistentvolumeclaims"


def restore_body(restore: VirtualMachineRestore) -> dict[str, Any]:
    """The restore as the store's dict (apiVersion/kind set; for writes, Events and spans)."""
    return {**encode_object(restore), "apiVersion": SNAPSHOT_API_VERSION, "kind": "VirtualMachineRestore"}


def vm_body(vm: VirtualMachine) -> dict[str, Any]:
    """The VM as the store's dict."""
    return {**encode_object(vm), "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine"}


class RestoreWriter:
    """Writes for the restore controller.

    Args:
        store: ObjectStore.
        restores, vms, pvcs: the informers whose caches receive the stored answers.
    """

    def __init__(self, store: Any, restores: Informer[VirtualMachineRestore], vms: Informer[VirtualMachine],
                 pvcs: Informer[PersistentVolumeClaim]) -> None:
        self.store = store
        self.restores = restores
        self.vms = vms
        self.pvcs = pvcs

    async def _update(self, informer: Informer[Any], plural: str, before: Any, body: dict[str, Any], *,
                      subresource: str | None = None) -> Any:
        try:
            stored = await self.store.update(plural, body, subresource=subresource)
        except NotFound:
            informer.assume_deleted(before)
            return None
        informer.assume_written(before, stored)
        return informer.decode(stored)

    async def write_status(self, restore: VirtualMachineRestore,
                           status: VirtualMachineRestoreStatus) -> VirtualMachineRestore | None:
        """``status`` on ``restore`` (CAS on ``/status``); nothing when unchanged. Raises Conflict."""
        if restore.status == status:
            return restore
        body = restore_body(restore)
        body["status"] = encode_object(status)
        return await self._update(self.restores, RESTORES, restore, body, subresource="status")

    async def own_and_protect(self, restore: VirtualMachineRestore,
                              owner: dict[str, Any] | None) -> VirtualMachineRestore | None:
        """Add the finalizer ``snapshot.kubevirt.io/vmrestore-protection`` and (without owners yet)
        the owner reference ``owner``; nothing when both are there. Raises Conflict."""
        body = restore_body(restore)
        meta = body.setdefault("metadata", {})
        changed = False
        if RESTORE_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), RESTORE_FINALIZER]
            changed = True
        if owner is not None and not meta.get("ownerReferences"):
            meta["ownerReferences"] = [owner]
            changed = True
        if not changed:
            return restore
        return await self._update(self.restores, RESTORES, restore, body)

    async def remove_finalizer(self, restore: VirtualMachineRestore) -> None:
        """Drop the restore finalizer (the store then removes a deleted restore). Raises Conflict."""
        body = restore_body(restore)
        meta = body.setdefault("metadata", {})
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != RESTORE_FINALIZER]
        await self._update(self.restores, RESTORES, restore, body)

    async def set_restore_in_progress(self, vm: VirtualMachine, name: str | None) -> VirtualMachine | None:
        """VM ``status.restoreInProgress = name`` (None clears it), CAS on ``/status``."""
        body = vm_body(vm)
        status = body.setdefault("status", {})
        if name is None:
            status.pop("restoreInProgress", None)
        else:
            status["restoreInProgress"] = name
        return await self._update(self.vms, VMS, vm, body, subresource="status")

    async def stop_vm(self, vm: VirtualMachine) -> VirtualMachine | None:
        """``spec.runStrategy: Halted`` (``spec.running`` dropped): the VM controller stops the VMI."""
        body = vm_body(vm)
        body["spec"].pop("running", None)
        body["spec"]["runStrategy"] = "Halted"
        return await self._update(self.vms, VMS, vm, body)

    async def write_vm(self, before: VirtualMachine | None, body: dict[str, Any]) -> VirtualMachine | None:
        """Create the VM (``before`` None; AlreadyExists re-reads it) or CAS-update its spec and
        metadata."""
        if before is not None:
            return await self._update(self.vms, VMS, before, body)
        try:
            stored = await self.store.create(VMS, body)
        except AlreadyExists:
            stored = await self.store.get(VMS, body["metadata"].get("namespace"), body["metadata"]["name"])
        self.vms.assume(stored)
        return self.vms.decode(stored)

    async def adopt_claim(self, pvc: PersistentVolumeClaim, owner: dict[str, Any]) -> None:
        """Owner reference ``owner`` on a claim marked ``restore.kubevirt.io/owned-by-vm`` (that
        annotation removed); KubeVirt's updateRestorePVCOwnership. Raises Conflict."""
        body = encode_object(pvc)
        body.update({"apiVersion": "v1", "kind": "PersistentVolumeClaim"})
        meta = body.setdefault("metadata", {})
        meta["ownerReferences"] = [owner]
        annotations = dict(meta.get("annotations") or {})
        annotations.pop(RESTORE_OWNED_BY_VM_LABEL, None)
        meta["annotations"] = annotations
        await self._update(self.pvcs, PVCS, pvc, body)
