"""VM controller: keeps each VirtualMachine's VMI in line with its run strategy.

Level-triggered (KubeVirt ``pkg/virt-controller/watch/vm``): VM and VMI events only enqueue the
VM key (``namespace/name``; a VM's VMI has the VM's name); :meth:`VMController.reconcile` reads
both from the informer caches, decides with the pure functions of :mod:`run_strategy`,
:mod:`backoff` and :mod:`vm_status`, then acts:

1. bookkeeping: carried-out ``stateChangeRequests`` trimmed, ``startFailure`` updated;
2. the run strategy's action: create the VMI from the template, delete it, append a Start
   request (written before the delete), or rewrite a Halted VM to Always (start paused);
3. ``status`` written only when it changed (compare-and-swap on the VM's resourceVersion);
   the first write also adds the finalizer ``kubevirt.io/virtualMachineControllerFinalize``
   to the VM, so a deleted VM stays (``Terminating``) until its VMI has stopped;
4. the VM finalizer removed from a final VMI being deleted once the status recorded it, and
   from a VM being deleted once its VMI is gone.

Every write is CAS; a Conflict makes the worker requeue the key, and the next pass reads the
newer state. Creating a VMI whose name exists answers AlreadyExists, so a second controller
(or a restarted one) can never start a VM twice.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from shared import tracing
from shared.errors import AlreadyExists, ApiError, Conflict, Invalid, NotFound
from services.virt_controller import phases
from services.virt_controller.backoff import compute_start_failure
from services.virt_controller.clock import Clock, SystemClock, format_micro_time, format_time
from shared.informer import Informer, object_key, split_key
from services.virt_controller.run_strategy import (
    NOTHING,
    START,
    RunStrategyAction,
    compute_run_strategy,
    compute_run_strategy_action,
    compute_trimmed_requests,
    has_start_paused_request,
)
from services.virt_controller.sync_error import FAILED_CREATE, FAILED_DELETE, FAILED_UPDATE, SyncError
from services.virt_controller.vm_status import compute_vm_status
from services.virt_controller.admission import apply_vmi_admission
from services.virt_controller.vmi_template import (
    VM_CONTROLLER_FINALIZER,
    compute_vmi_for_vm,
    controller_of,
    is_controlled_by,
)
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"


class VMController:
    """Reconciles VirtualMachines.

    Args:
        store: ObjectStore.
        vms, vmis: informers of ``virtualmachines`` and ``virtualmachineinstances``.
        queue: work queue of VM keys (filled by the informer handlers registered here).
        clock: wall clock (crash-loop backoff, timestamps).
        report: ``report(obj, type, reason, message)`` records a Kubernetes Event (KubeVirt's
            SuccessfulCreate / SuccessfulDelete on the VM); default: record nothing.
    """

    def __init__(self, store: Any, vms: Informer, vmis: Informer, queue: WorkQueue | None = None,
                 *, clock: Clock | None = None, report: Any = None) -> None:
        self.store = store
        self.report = report or (lambda obj, event_type, reason, message: None)
        self.vms = vms
        self.vmis = vmis
        self.queue = queue or WorkQueue(name="vm")
        self.clock = clock or SystemClock()
        vms.add_handler(self._on_vm)
        vmis.add_handler(self._on_vmi)

    # -- event handlers: only enqueue ----------------------------------------------------------
    def _on_vm(self, old: dict | None, new: dict | None) -> None:
        self.queue.add(object_key(new or old))

    def _on_vmi(self, old: dict | None, new: dict | None) -> None:
        obj = new or old
        ref = controller_of(obj)
        if ref is not None and ref.get("kind") != "VirtualMachine":
            return
        self.queue.add(object_key(obj))  # the VM of a VMI has the VMI's name

    def enqueue_all(self) -> None:
        """Queue every cached VM (after gaining leadership)."""
        for key in self.vms.keys():
            self.queue.add(key)

    # -- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        """Converge one VM. Raises SyncError/Conflict for the worker to requeue."""
        vm = self.vms.get(key)
        vmi = self.vmis.get(key)
        if vm is None:
            if vmi is not None:
                await self._release_vmi(vmi)
            return
        now = self.clock.now()
        now_text = format_time(now)
        status = copy.deepcopy(vm.get("status") or {})
        sync_error: SyncError | None = None
        strategy: str | None = None
        action: RunStrategyAction = NOTHING
        try:
            strategy = compute_run_strategy(vm)
        except SyncError as err:
            sync_error = err
        foreign = vmi is not None and not is_controlled_by(vmi, vm)
        if foreign:
            # e.g. the VMI of a deleted VM of the same name, still stopping: wait for it to go
            sync_error = SyncError(f"VMI {key} exists and is not controlled by this VM",
                                   reason=FAILED_CREATE, retry_after=1.0)
            vmi = None
        if phases.is_marked_for_deletion(vm):
            if vmi is not None and not phases.is_marked_for_deletion(vmi):
                vmi = await self._delete_vmi(vmi)
        elif strategy is not None and not foreign:
            status["stateChangeRequests"] = compute_trimmed_requests(status.get("stateChangeRequests"), vmi)
            status["startFailure"] = compute_start_failure(status.get("startFailure"), strategy, vmi, now)
            try:
                action = compute_run_strategy_action(strategy, status, vmi, now)
                vm, vmi, status = await self._apply(vm, vmi, status, action, now_text)
            except SyncError as err:
                sync_error = err
        new_status = compute_vm_status(vm, vmi, strategy, status, sync_error, now_text)
        if new_status != (vm.get("status") or {}):
            vm = await self._write_status(vm, new_status)
        if vmi is not None and phases.is_final(vmi) and phases.is_marked_for_deletion(vmi):
            await self._release_vmi(vmi)
        if phases.is_marked_for_deletion(vm) and vmi is None:
            await self._release_vm(vm)
        if sync_error is not None:
            raise sync_error
        if action.requeue_after is not None:
            self.queue.add_after(key, action.requeue_after)

    # -- effects -------------------------------------------------------------------------------
    async def _apply(self, vm: dict, vmi: dict | None, status: dict, action: RunStrategyAction,
                     now_text: str) -> tuple[dict, dict | None, dict]:
        if action.add_start_request:
            requests = list(status.get("stateChangeRequests") or [])
            requests.append({"action": START})
            status["stateChangeRequests"] = requests
            vm = await self._write_status(vm, compute_vm_status(vm, vmi, compute_run_strategy(vm), status,
                                                                None, now_text))
            status = copy.deepcopy(vm.get("status") or {})
        if action.delete and vmi is not None:
            vmi = await self._delete_vmi(vmi)
        if action.create and vmi is None:
            vmi = await self._create_vmi(vm, status)
        if action.switch_to_always:
            vm = await self._switch_to_always(vm)
        return vm, vmi, status

    async def _create_vmi(self, vm: dict, status: dict) -> dict:
        desired = compute_vmi_for_vm(vm, start_paused=has_start_paused_request(status),
                                     now=format_micro_time(self.clock.now()))
        try:
            desired = apply_vmi_admission(desired)
            tracing.apply_trace_annotations(desired)  # the VMI's own reconciles continue this trace
            created = await self.store.create(VMIS, desired)
        except AlreadyExists:
            meta = vm["metadata"]
            try:
                created = await self.store.get(VMIS, meta.get("namespace"), meta["name"])
            except NotFound as err:
                raise SyncError(f"VMI create raced with its deletion: {err}", reason=FAILED_CREATE) from None
            if not is_controlled_by(created, vm):
                raise SyncError(f"VMI {meta['name']} exists and is not controlled by this VM",
                                reason=FAILED_CREATE, retry_after=1.0)
        except Invalid as err:
            raise SyncError(f"failed to create virtual machine instance: {err}", reason=FAILED_CREATE,
                            retryable=False) from None
        except ApiError as err:
            raise SyncError(f"failed to create virtual machine instance: {err}", reason=FAILED_CREATE) from None
        else:
            self.report(vm, "Normal", "SuccessfulCreate", f"Started the virtual machine by creating the new "
                        f"virtual machine instance {created['metadata']['name']}")
        self.vmis.assume(created)
        log.info("created VMI %s", object_key(created))
        return created

    async def _delete_vmi(self, vmi: dict) -> dict | None:
        meta = vmi["metadata"]
        grace = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
        try:
            result = await self.store.delete(VMIS, meta.get("namespace"), meta["name"],
                                             precondition_rv=meta.get("resourceVersion"),
                                             grace_period_seconds=grace)
        except NotFound:
            self.vmis.assume_deleted(vmi)
            return None
        except Conflict:
            raise
        except ApiError as err:
            raise SyncError(f"Failure attempting to delete VMI: {err}", reason=FAILED_DELETE) from None
        owner = self.vms.get(object_key(vmi))
        if owner is not None:
            self.report(owner, "Normal", "SuccessfulDelete",
                        f"Stopped the virtual machine by deleting the virtual machine instance {meta.get('uid', '')}")
        if phases.is_marked_for_deletion(result):
            self.vmis.assume(result)
            return result
        self.vmis.assume_deleted(result)
        return None

    async def _switch_to_always(self, vm: dict) -> dict:
        updated = copy.deepcopy(vm)
        spec = updated.setdefault("spec", {})
        if spec.get("runStrategy") is not None:
            spec["runStrategy"] = "Always"
        else:
            spec["running"] = True
        try:
            stored = await self.store.update(VMS, updated)
        except Conflict:
            raise
        except ApiError as err:
            raise SyncError(f"failed to start VM: {err}", reason=FAILED_UPDATE) from None
        self.vms.assume(stored)
        return stored

    async def _write_status(self, vm: dict, status: dict) -> dict:
        """Write ``status``; a VM not yet carrying the controller finalizer gets it in the same
        write (a whole-object CAS update), so adopting a VM costs no extra write."""
        updated = dict(vm)
        updated["status"] = status
        meta = vm.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        try:
            if VM_CONTROLLER_FINALIZER not in finalizers and not phases.is_marked_for_deletion(vm):
                updated["metadata"] = {**meta, "finalizers": finalizers + [VM_CONTROLLER_FINALIZER]}
                stored = await self.store.update(VMS, updated, has_status_subresource=False)
            else:
                stored = await self.store.update(VMS, updated, subresource="status")
        except NotFound:
            return vm
        self.vms.assume(stored)
        return stored

    async def _release_vm(self, vm: dict) -> None:
        """Remove the controller finalizer from a VM being deleted whose VMI is gone."""
        meta = vm.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if VM_CONTROLLER_FINALIZER not in finalizers:
            return
        finalizers.remove(VM_CONTROLLER_FINALIZER)
        try:
            stored = await self.store.update(VMS, {**vm, "metadata": {**meta, "finalizers": finalizers}})
        except NotFound:
            self.vms.assume_deleted(vm)
            return
        if finalizers:
            self.vms.assume(stored)
        else:
            self.vms.assume_deleted(stored)

    async def _release_vmi(self, vmi: dict) -> None:
        """Remove the VM finalizer from a VMI being deleted once the VM no longer needs to see
        it: the VMI is final (its outcome is in the VM status), or its VM is gone."""
        meta = vmi.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if VM_CONTROLLER_FINALIZER not in finalizers or not phases.is_marked_for_deletion(vmi):
            return
        owner = self.vms.get(object_key(vmi))
        if not phases.is_final(vmi) and owner is not None and is_controlled_by(vmi, owner):
            return
        finalizers.remove(VM_CONTROLLER_FINALIZER)
        updated = {**vmi, "metadata": {**meta, "finalizers": finalizers}}
        try:
            stored = await self.store.update(VMIS, updated, has_status_subresource=False)
        except NotFound:
            stored = None
        self.vmis.assume_written(vmi, stored)


__all__ = ["VMController", "split_key"]
