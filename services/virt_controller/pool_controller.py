"""VirtualMachinePool controller (``pool.kubevirt.io/v1beta1``): keep ``spec.replicas`` VMs.

After KubeVirt's ``pkg/virt-controller/watch/pool``: the pool's VMs are named
``<pool>-<index>`` (the lowest free index first), carry the template's labels/annotations and a
controller ownerReference to the pool, and are created from ``spec.virtualMachineTemplate``
(VM admission applied, as a user's create would be). Scaling down deletes the highest indexes
first. ``status.replicas`` counts the pool's VMs that are not being deleted, ``readyReplicas``
those whose ``status.ready`` is true; ``labelSelector`` is the selector as a string.
``spec.paused`` stops scaling. The VMs themselves are run by the VM controller.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import Any

from shared.errors import AlreadyExists, ApiError, NotFound
from shared.store import label_selector_from_dict
from services.virt_controller import phases
from services.virt_controller.admission import apply_create_admission
from services.virt_controller.clock import Clock, SystemClock, format_time
from services.virt_controller.conditions import with_condition, without_condition
from shared.informer import Informer, object_key
from services.virt_controller.replicaset_controller import compute_selector_text
from services.virt_controller.sync_error import FAILED_CREATE, SyncError
from services.virt_controller.vmi_template import controller_of, controller_ref, is_controlled_by
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
    out, index = [], 0
    while len(out) < count:
        if index not in used:
            out.append(index)
        index += 1
    return out


def compute_vm_for_pool(pool: dict[str, Any], index: int) -> dict[str, Any]:
    """The VM ``<pool>-<index>`` from the pool's ``virtualMachineTemplate`` (pure)."""
    meta = pool["metadata"]
    template = (pool.get("spec") or {}).get("virtualMachineTemplate") or {}
    tmeta = template.get("metadata") or {}
    vm_meta: dict[str, Any] = {
        "name": f"{meta['name']}-{index}",
        "namespace": meta.get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_ref({**pool, "apiVersion": POOL_API_VERSION}, KIND)],
    }
    if tmeta.get("annotations"):
        vm_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": vm_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


class PoolController:
    """Reconciles VirtualMachinePools over the VM informer."""

    def __init__(self, store: Any, pools: Informer, vms: Informer, queue: WorkQueue | None = None, *,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.pools = pools
        self.vms = vms
        self.queue = queue or WorkQueue(name="vmpool")
        self.clock = clock or SystemClock()
        pools.add_handler(lambda old, new: self.queue.add(object_key(new or old)))
        vms.add_handler(self._on_vm)

    def _on_vm(self, old: dict | None, new: dict | None) -> None:
        ref = controller_of(new or old)
        if ref is not None and ref.get("kind") == KIND:
            self.queue.add(f"{((new or old).get('metadata') or {}).get('namespace')}/{ref['name']}")

    def enqueue_all(self) -> None:
        for key in self.pools.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        pool = self.pools.get(key)
        if pool is None or phases.is_marked_for_deletion(pool):
            return
        spec = pool.get("spec") or {}
        name = pool["metadata"]["name"]
        namespace = pool["metadata"].get("namespace")
        selector = label_selector_from_dict(spec.get("selector"))
        live = [vm for vm in self.vms.items()
                if (vm.get("metadata") or {}).get("namespace") == namespace and is_controlled_by(vm, pool)
                and selector.matches(vm) and not phases.is_marked_for_deletion(vm)]
        error = None
        if not spec.get("paused"):
            wanted = int(spec["replicas"]) if spec.get("replicas") is not None else 1
            if len(live) < wanted:
                used = {i for vm in live if (i := compute_vm_index(name, vm["metadata"]["name"])) is not None}
                created, error = await self._create(pool, compute_free_indexes(used, wanted - len(live)))
                live += created
            elif len(live) > wanted:
                ordered = sorted(live, key=lambda vm: compute_vm_index(name, vm["metadata"]["name"]) or -1,
                                 reverse=True)
                doomed = ordered[: len(live) - wanted]
                await asyncio.gather(*(self._delete(vm) for vm in doomed))
                gone = {object_key(vm) for vm in doomed}
                live = [vm for vm in live if object_key(vm) not in gone]
        status = copy.deepcopy(pool.get("status") or {})
        status["replicas"] = len(live)
        status["readyReplicas"] = sum(1 for vm in live if (vm.get("status") or {}).get("ready"))
        status["labelSelector"] = compute_selector_text(spec.get("selector"))
        now = format_time(self.clock.now())
        if error:
            conditions = with_condition(status.get("conditions"), {
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": error}, now)
        else:
            conditions = without_condition(status.get("conditions"), "ReplicaFailure")
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        if status != (pool.get("status") or {}):
            try:
                stored = await self.store.update(POOLS, {**pool, "status": status}, subresource="status")
            except NotFound:
                return
            self.pools.assume(stored)
        if error:
            raise SyncError(error, reason=FAILED_CREATE)

    async def _create(self, pool: dict, indexes: list[int]) -> tuple[list[dict], str | None]:
        async def one(index: int) -> dict:
            vm = apply_create_admission("kubevirt.io", "v1", VMS, compute_vm_for_pool(pool, index))
            try:
                return await self.store.create(VMS, vm)
            except AlreadyExists:
                return await self.store.get(VMS, vm["metadata"].get("namespace"), vm["metadata"]["name"])

        results = await asyncio.gather(*(one(i) for i in indexes), return_exceptions=True)
        created = [r for r in results if isinstance(r, dict) and is_controlled_by(r, pool)]
        for vm in created:
            self.vms.assume(vm)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return created, f"failed to create {len(errors)} of {len(indexes)} VMs: {errors[0]}"
        if len(created) < len(indexes):
            return created, "a VM with a pool VM's name exists and is not controlled by the pool"
        return created, None

    async def _delete(self, vm: dict) -> None:
        meta = vm["metadata"]
        try:
            result = await self.store.delete(VMS, meta.get("namespace"), meta["name"])
        except NotFound:
            self.vms.assume_deleted(vm)
            return
        except ApiError as err:
            log.warning("delete of VM %s failed: %s", object_key(vm), err)
            return
        if phases.is_marked_for_deletion(result):
            self.vms.assume(result)
        else:
            self.vms.assume_deleted(result)
