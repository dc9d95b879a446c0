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

import logging
from typing import Any

from msgspec.structs import replace

from services.virt_controller import phases
from services.virt_controller.admission import apply_vmi_admission
from services.virt_controller.backoff import compute_start_failure
from shared.clock import Clock, SystemClock
from services.virt_controller.run_strategy import (
    NOTHING,
    RunStrategyAction,
    compute_run_strategy,
    compute_restore_hold,
    compute_run_strategy_action,
    compute_trimmed_requests,
    has_start_paused_request,
)
from shared.sync_error import SyncError
from services.virt_controller.typed_writes import (
    assume_delete_result,
    assume_stored,
)
from services.virt_controller.vm_status import compute_vm_status
from services.virt_controller.vmi_template import (
    VM_CONTROLLER_FINALIZER,
    compute_vmi_for_vm,
    controller_of,
    is_controlled_by,
)
from shared import tracing
from shared.api.decoding import encode_object
from shared.api.vm import (
    VirtualMachine,
    VirtualMachineStateChangeRequest,
    VirtualMachineStatus,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import (
    EventType,
    Reason,
    RunStrategy,
    StateChangeAction,
    format_micro_time,
    format_time,
)
from shared.errors import AlreadyExists, ApiError, Conflict, Invalid, NotFound
from shared.informer import Informer, key_of, split_key
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
VM_KIND = "VirtualMachine"

VMInformer = Informer[VirtualMachine]
VMIInformer = Informer[VirtualMachineInstance]


def _finalizers(obj: VirtualMachine | VirtualMachineInstance) -> list[str]:
    return list((obj.metadata.finalizers if obj.metadata is not None else None) or ())


def _with_finalizers(obj: Any, finalizers: list[str]) -> Any:
    return replace(obj, metadata=replace(obj.metadata, finalizers=finalizers or None))


class VMController:
    """Reconciles VirtualMachines.

    Args:
        store: ObjectStore.
        vms, vmis: typed informers of ``virtualmachines`` and ``virtualmachineinstances``
            (``decode=VirtualMachine`` / ``decode=VirtualMachineInstance``).
        queue: work queue of VM keys (filled by the informer handlers registered here).
        clock: wall clock (crash-loop backoff, timestamps).
        report: ``report(vm, type, reason, message)`` records a Kubernetes Event (KubeVirt's
            SuccessfulCreate / SuccessfulDelete on the VM); default: record nothing.
    """

    def __init__(self, store: Any, vms: VMInformer, vmis: VMIInformer, queue: WorkQueue | None = None,
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
    def _on_vm(self, old: VirtualMachine | None, new: VirtualMachine | None) -> None:
        self.queue.add(key_of(new or old))

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        obj = new or old
        ref = controller_of(obj)
        if ref is not None and ref.kind != VM_KIND:
            return
        self.queue.add(key_of(obj))  # the VM of a VMI has the VMI's name

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
        status = vm.status or VirtualMachineStatus()
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
                                   reason=Reason.FAILED_CREATE, retry_after=1.0)
            vmi = None
        if phases.is_marked_for_deletion(vm):
            if vmi is not None and not phases.is_marked_for_deletion(vmi):
                vmi = await self._delete_vmi(vmi)
        elif strategy is not None and not foreign:
            status = replace(status,
                             state_change_requests=compute_trimmed_requests(status.state_change_requests, vmi),
                             start_failure=compute_start_failure(status.start_failure, strategy, vmi, now))
            try:
                action = compute_restore_hold(compute_run_strategy_action(strategy, status, vmi, now), status)
                vm, vmi, status = await self._apply(vm, vmi, status, action, now_text)
            except SyncError as err:
                sync_error = err
        new_status = compute_vm_status(vm, vmi, strategy, status, sync_error, now_text)
        if new_status != (vm.status or VirtualMachineStatus()):
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
    async def _apply(self, vm: VirtualMachine, vmi: VirtualMachineInstance | None, status: VirtualMachineStatus,
                     action: RunStrategyAction, now_text: str,
                     ) -> tuple[VirtualMachine, VirtualMachineInstance | None, VirtualMachineStatus]:
        if action.add_start_request:
            requests = list(status.state_change_requests or ())
            requests.append(VirtualMachineStateChangeRequest(action=StateChangeAction.START))
            status = replace(status, state_change_requests=requests)
            vm = await self._write_status(vm, compute_vm_status(vm, vmi, compute_run_strategy(vm), status,
                                                                None, now_text))
            status = vm.status or VirtualMachineStatus()
        if action.delete and vmi is not None:
            vmi = await self._delete_vmi(vmi)
        if action.create and vmi is None:
            vmi = await self._create_vmi(vm, status)
        if action.switch_to_always:
            vm = await self._switch_to_always(vm)
        return vm, vmi, status

    async def _create_vmi(self, vm: VirtualMachine, status: VirtualMachineStatus) -> VirtualMachineInstance | None:
        desired = compute_vmi_for_vm(vm, start_paused=has_start_paused_request(status),
                                     now=format_micro_time(self.clock.now()))
        namespace, name = split_key(key_of(vm))
        try:
            desired = apply_vmi_admission(desired)
            tracing.apply_trace_annotations(desired)  # the VMI's own reconciles continue this trace
            created = await self.store.create(VMIS, desired)
        except AlreadyExists:
            try:
                created = await self.store.get(VMIS, namespace, name)
            except NotFound as err:
                raise SyncError(f"VMI create raced with its deletion: {err}",
                                reason=Reason.FAILED_CREATE) from None
            typed = self.vmis.decode(created)
            if not is_controlled_by(typed, vm):
                raise SyncError(f"VMI {name} exists and is not controlled by this VM",
                                reason=Reason.FAILED_CREATE, retry_after=1.0)
        except Invalid as err:
            raise SyncError(f"failed to create virtual machine instance: {err}", reason=Reason.FAILED_CREATE,
                            retryable=False) from None
        except ApiError as err:
            raise SyncError(f"failed to create virtual machine instance: {err}",
                            reason=Reason.FAILED_CREATE) from None
        else:
            self.report(vm, EventType.NORMAL, Reason.SUCCESSFUL_CREATE, f"Started the virtual machine by "
                        f"creating the new virtual machine instance {created['metadata']['name']}")
        log.info("created VMI %s", key_of(created))
        return assume_stored(self.vmis, created)

    async def _delete_vmi(self, vmi: VirtualMachineInstance) -> VirtualMachineInstance | None:
        meta = vmi.metadata
        assert meta is not None and meta.name  # cached objects are keyed by name
        try:
            result = await self.store.delete(VMIS, meta.namespace, meta.name,
                                             precondition_rv=meta.resource_version,
                                             grace_period_seconds=vmi.spec.termination_grace_period_seconds)
        except NotFound:
            self.vmis.assume_deleted(vmi)
            return None
        except Conflict:
            raise
        except ApiError as err:
            raise SyncError(f"Failure attempting to delete VMI: {err}", reason=Reason.FAILED_DELETE) from None
        owner = self.vms.get(key_of(vmi))
        if owner is not None:
            self.report(owner, EventType.NORMAL, Reason.SUCCESSFUL_DELETE, "Stopped the virtual machine by "
                        f"deleting the virtual machine instance {meta.uid or ''}")
        return assume_delete_result(self.vmis, vmi, result)

    async def _switch_to_always(self, vm: VirtualMachine) -> VirtualMachine:
        if vm.spec.run_strategy is not None:
            spec = replace(vm.spec, run_strategy=RunStrategy.ALWAYS)
        else:
            spec = replace(vm.spec, running=True)
        try:
            stored = await self.store.update(VMS, encode_object(replace(vm, spec=spec)))
        except Conflict:
            raise
        except ApiError as err:
            raise SyncError(f"failed to start VM: {err}", reason=Reason.FAILED_UPDATE) from None
        return assume_stored(self.vms, stored) or vm

    async def _write_status(self, vm: VirtualMachine, status: VirtualMachineStatus) -> VirtualMachine:
        """Write ``status``; a VM not yet carrying the controller finalizer gets it in the same
        write (a whole-object CAS update), so adopting a VM costs no extra write. Otherwise only
        metadata and status are sent, to the status subresource (the stored spec is kept)."""
        finalizers = _finalizers(vm)
        try:
            if VM_CONTROLLER_FINALIZER not in finalizers and not phases.is_marked_for_deletion(vm):
                updated = replace(_with_finalizers(vm, finalizers + [VM_CONTROLLER_FINALIZER]), status=status)
                stored = await self.store.update(VMS, encode_object(updated), has_status_subresource=False)
            else:
                body = {"metadata": encode_object(vm.metadata), "status": encode_object(status)}
                stored = await self.store.update(VMS, body, subresource="status")
        except NotFound:
            return vm
        return assume_stored(self.vms, stored) or vm

    async def _release_vm(self, vm: VirtualMachine) -> None:
        """Remove the controller finalizer from a VM being deleted whose VMI is gone."""
        finalizers = _finalizers(vm)
        if VM_CONTROLLER_FINALIZER not in finalizers:
            return
        finalizers.remove(VM_CONTROLLER_FINALIZER)
        try:
            stored = await self.store.update(VMS, encode_object(_with_finalizers(vm, finalizers)))
        except NotFound:
            self.vms.assume_deleted(vm)
            return
        if finalizers:
            self.vms.assume(stored)
        else:
            self.vms.assume_deleted(stored)

    async def _release_vmi(self, vmi: VirtualMachineInstance) -> None:
        """Remove the VM finalizer from a VMI being deleted once the VM no longer needs to see
        it: the VMI is final (its outcome is in the VM status), or its VM is gone."""
        finalizers = _finalizers(vmi)
        if VM_CONTROLLER_FINALIZER not in finalizers or not phases.is_marked_for_deletion(vmi):
            return
        owner = self.vms.get(key_of(vmi))
        if not phases.is_final(vmi) and owner is not None and is_controlled_by(vmi, owner):
            return
        finalizers.remove(VM_CONTROLLER_FINALIZER)
        try:
            stored = await self.store.update(VMIS, encode_object(_with_finalizers(vmi, finalizers)),
                                             has_status_subresource=False)
        except NotFound:
            stored = None
        self.vmis.assume_written(vmi, stored)


__all__ = ["VMController", "split_key"]
