"""VirtualMachinePool controller (``pool.kubevirt.io/v1beta1``): keep ``spec.replicas`` VMs.

After KubeVirt's ``pkg/virt-controller/watch/pool``: the pool's VMs are named
``<pool>-<index>`` (the lowest free index first), carry the template's labels/annotations and a
controller ownerReference to the pool, and are created from ``spec.virtualMachineTemplate``
(VM admission applied, as a user's create would be). Scaling down deletes the highest indexes
first. ``status.replicas`` counts the pool's VMs that are not being deleted, ``readyReplicas``
those whose ``status.ready`` is true; ``labelSelector`` is the selector as a string.
``spec.paused`` stops scaling. The VMs themselves are run by the VM controller. A pool's VMs come
from an index of the VM cache by controller uid (no scan of every VM per pass).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from msgspec.structs import replace

from services.virt_controller import phases
from services.virt_controller.admission import apply_create_admission
from shared.clock import Clock, SystemClock
from services.virt_controller.key_index import KeyIndex
from services.virt_controller.replicaset_controller import (
    compute_replica_failure,
    compute_selector_text,
    controller_uid_of,
)
from shared.sync_error import SyncError
from services.virt_controller.typed_writes import assume_delete_result
from shared.api.decoding import encode_object
from services.virt_controller.vmi_template import (
    controller_of,
    controller_ref,
    is_controlled_by,
)
from shared.api.pool import VirtualMachinePool, VirtualMachinePoolStatus
from shared.api.vm import VirtualMachine
from shared.api.vocabulary import Reason, format_time
from shared.errors import AlreadyExists, ApiError, NotFound
from shared.informer import Informer, key_of
from shared.store import label_selector_from_dict
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

POOLS = "virtualmachinepools"
VMS = "virtualmachines"
KIND = "VirtualMachinePool"
POOL_API_VERSION = "pool.kubevirt.io/v1beta1"


def compute_vm_index(pool_name: str, vm_name: str) -> int | None:
    """The index in ``<pool>-<index>``, or None for another name."""
    match = re.fullmatch(re.escape(pool_name) + r"-(\d+)", vm_name)
    return int(match.group(1)) if match else None


def compute_free_indexes(used: set[int], count: int) -> list[int]:
    """The ``count`` lowest indexes not in ``used``."""
    out: list[int] = []
    index = 0
    while len(out) < count:
        if index not in used:
            out.append(index)
        index += 1
    return out


def compute_vm_for_pool(pool: VirtualMachinePool, index: int) -> dict[str, Any]:
    """The VM ``<pool>-<index>`` from the pool's ``virtualMachineTemplate``, as the JSON-ready
    body of its create (pure). Raises ValueError for a pool without name or uid."""
    meta = pool.metadata
    name = meta.name if meta is not None else None
    template = pool.spec.virtual_machine_template
    tmeta = template.metadata
    vm_meta: dict[str, Any] = {
        "name": f"{name}-{index}",
        "namespace": meta.namespace if meta is not None else None,
        "labels": dict((tmeta.labels if tmeta is not None else None) or {}),
        "ownerReferences": [controller_ref(pool, KIND, POOL_API_VERSION)],
    }
    if tmeta is not None and tmeta.annotations:
        vm_meta["annotations"] = dict(tmeta.annotations)
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": vm_meta,
            "spec": encode_object(template.spec) if template.spec is not None else {}}


def _is_ready(vm: VirtualMachine) -> bool:
    return bool(vm.status is not None and vm.status.ready)


def _name(vm: VirtualMachine) -> str:
    return (vm.metadata.name if vm.metadata is not None else None) or ""


class PoolController:
    """Reconciles VirtualMachinePools over the typed VM informer."""

    def __init__(self, store: Any, pools: Informer[VirtualMachinePool], vms: Informer[VirtualMachine],
                 queue: WorkQueue | None = None, *, clock: Clock | None = None) -> None:
        self.store = store
        self.pools = pools
        self.vms = vms
        self.queue = queue or WorkQueue(name="vmpool")
        self.clock = clock or SystemClock()
        self.by_owner: KeyIndex[VirtualMachine] = KeyIndex(vms, lambda vm: controller_uid_of(vm, KIND))
        pools.add_handler(lambda old, new: self.queue.add(key_of(new or old)))
        vms.add_handler(self._on_vm)

    def _on_vm(self, old: VirtualMachine | None, new: VirtualMachine | None) -> None:
        obj = new or old
        ref = controller_of(obj)
        if obj is not None and ref is not None and ref.kind == KIND:
            self.queue.add(f"{obj.metadata.namespace if obj.metadata is not None else None}/{ref.name}")

    def enqueue_all(self) -> None:
        """Queue every cached pool (after gaining leadership)."""
        for key in self.pools.keys():
            self.queue.add(key)

    def live(self, pool: VirtualMachinePool) -> list[VirtualMachine]:
        """The pool's cached VMs that match its selector and are not being deleted (owner index)."""
        meta = pool.metadata
        if meta is None or not meta.uid:
            return []
        selector = label_selector_from_dict(encode_object(pool.spec.selector))
        found = (self.vms.get(key) for key in self.by_owner.keys(meta.uid))
        return [vm for vm in found if vm is not None and vm.metadata is not None
                and vm.metadata.namespace == meta.namespace and is_controlled_by(vm, pool)
                and selector.matches(vm.metadata.labels or {}) and not phases.is_marked_for_deletion(vm)]

    async def reconcile(self, key: str) -> None:
        """Converge one pool: scale to ``spec.replicas`` and write status."""
        pool = self.pools.get(key)
        if pool is None or pool.metadata is None or phases.is_marked_for_deletion(pool):
            return
        spec = pool.spec
        name = pool.metadata.name or ""
        live = self.live(pool)
        error = None
        if not spec.paused:
            wanted = int(spec.replicas) if spec.replicas is not None else 1
            if len(live) < wanted:
                used = {i for vm in live if (i := compute_vm_index(name, _name(vm))) is not None}
                created, error = await self._create(pool, compute_free_indexes(used, wanted - len(live)))
                live += created
            elif len(live) > wanted:
                ordered = sorted(live, key=lambda vm: compute_vm_index(name, _name(vm)) or -1, reverse=True)
                doomed = ordered[: len(live) - wanted]
                await asyncio.gather(*(self._delete(vm) for vm in doomed))
                gone = {key_of(vm) for vm in doomed}
                live = [vm for vm in live if key_of(vm) not in gone]
        current = pool.status or VirtualMachinePoolStatus()
        status = replace(current, replicas=len(live), ready_replicas=sum(1 for vm in live if _is_ready(vm)),
                         label_selector=compute_selector_text(spec.selector),
                         conditions=compute_replica_failure(current.conditions, error,
                                                            format_time(self.clock.now())))
        if status != current:
            body = {"metadata": encode_object(pool.metadata), "status": encode_object(status)}
            try:
                stored = await self.store.update(POOLS, body, subresource="status")
            except NotFound:
                return
            self.pools.assume(stored)
        if error:
            raise SyncError(error, reason=Reason.FAILED_CREATE)

    async def _create(self, pool: VirtualMachinePool, indexes: list[int]) -> tuple[list[VirtualMachine], str | None]:
        async def one(index: int) -> dict[str, Any]:
            vm = apply_create_admission("kubevirt.io", "v1", VMS, compute_vm_for_pool(pool, index))
            try:
                created: dict[str, Any] = await self.store.create(VMS, vm)
            except AlreadyExists:
                created = await self.store.get(VMS, vm["metadata"].get("namespace"), vm["metadata"]["name"])
            return created

        results = await asyncio.gather(*(one(i) for i in indexes), return_exceptions=True)
        typed = [self.vms.decode(r) for r in results if isinstance(r, dict)]
        created = [vm for vm in typed if vm is not None and is_controlled_by(vm, pool)]
        for vm in created:
            self.vms.assume(vm)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return created, f"failed to create {len(errors)} of {len(indexes)} VMs: {errors[0]}"
        if len(created) < len(indexes):
            return created, "a VM with a pool VM's name exists and is not controlled by the pool"
        return created, None

    async def _delete(self, vm: VirtualMachine) -> None:
        meta = vm.metadata
        assert meta is not None and meta.name  # cached objects are keyed by name
        try:
            result = await self.store.delete(VMS, meta.namespace, meta.name)
        except NotFound:
            self.vms.assume_deleted(vm)
            return
        except ApiError as err:
            log.warning("delete of VM %s failed: %s", key_of(vm), err)
            return
        assume_delete_result(self.vms, vm, result)
