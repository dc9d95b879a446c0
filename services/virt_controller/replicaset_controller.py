"""VirtualMachineInstanceReplicaSet controller: keep ``spec.replicas`` VMIs from the template.

After KubeVirt's ``pkg/virt-controller/watch/replicaset``: VMIs the replica set controls (its
controller ownerReference) that are final are deleted and replaced; missing ones are created
with ``generateName: <replica set name>``; extras are deleted, the least advanced first (not yet
placed before placed, not ready before ready, newest first). At most ``burst`` creates or deletes
run per pass (KubeVirt's ``BurstReplicas``, 250). ``status.replicas`` counts live VMIs,
``readyReplicas`` those with ``Ready=True``; ``labelSelector`` is the selector as a string.
Creates and deletes are put into the informer cache at once (read-your-writes), so the next
pass never creates the same replica twice. ``spec.paused`` stops scaling.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from shared.errors import ApiError, NotFound
from shared.store import label_selector_from_dict
from services.virt_controller import phases
from services.virt_controller.clock import Clock, SystemClock, format_micro_time, format_time
from services.virt_controller.conditions import has_condition, with_condition, without_condition
from shared.informer import Informer, object_key
from services.virt_controller.sync_error import FAILED_CREATE, FAILED_DELETE, SyncError
from services.virt_controller.admission import apply_vmi_admission
from services.virt_controller.vmi_template import compute_vmi_for_replica_set, controller_of, is_controlled_by
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

REPLICA_SETS = "virtualmachineinstancereplicasets"
VMIS = "virtualmachineinstances"
KIND = "VirtualMachineInstanceReplicaSet"
DEFAULT_BURST = 250
_PHASE_RANK = {"": 0, phases.PENDING: 0, phases.SCHEDULING: 1, phases.SCHEDULED: 2, phases.UNKNOWN: 3,
               phases.RUNNING: 4}


def compute_deletion_order(vmis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """VMIs sorted so the first ones are the best to delete when scaling down (pure)."""
    def rank(vmi: dict[str, Any]) -> tuple[int, int, str]:
        created = (vmi.get("metadata") or {}).get("creationTimestamp") or ""
        # newest first: invert the timestamp's ordering through a negated character map
        inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)
        return (_PHASE_RANK.get(phases.phase_of(vmi), 0), 1 if has_condition(vmi, "Ready") else 0, inverted)
    return sorted(vmis, key=rank)


def compute_replica_set_status(rs: dict[str, Any], live: list[dict[str, Any]], selector_text: str,
                               error: str | None, now: str) -> dict[str, Any]:
    """The replica set's status from its live VMIs (pure)."""
    status = copy.deepcopy(rs.get("status") or {})
    status["replicas"] = len(live)
    status["readyReplicas"] = sum(1 for v in live if has_condition(v, "Ready"))
    status["labelSelector"] = selector_text
    if error:
        status["conditions"] = with_condition(status.get("conditions"), {
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": error}, now)
    else:
        status["conditions"] = without_condition(status.get("conditions"), "ReplicaFailure")
    if not status["conditions"]:
        del status["conditions"]
    return status


def compute_selector_text(selector: dict[str, Any] | None) -> str:
    parts = [f"{k}={v}" for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        op = expr.get("operator")
        if op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
        else:
            parts.append(f"{expr['key']} {op.lower()} ({','.join(expr.get('values') or [])})")
    return ",".join(parts)


class ReplicaSetController:
    """Reconciles VirtualMachineInstanceReplicaSets.

    Args:
        store: ObjectStore.
        replica_sets, vmis: informers.
        burst: maximum creates/deletes per pass.
    """

    def __init__(self, store: Any, replica_sets: Informer, vmis: Informer, queue: WorkQueue | None = None, *,
                 clock: Clock | None = None, burst: int = DEFAULT_BURST) -> None:
        self.store = store
        self.replica_sets = replica_sets
        self.vmis = vmis
        self.queue = queue or WorkQueue(name="vmirs")
        self.clock = clock or SystemClock()
        self.burst = burst
        replica_sets.add_handler(lambda old, new: self.queue.add(object_key(new or old)))
        vmis.add_handler(self._on_vmi)

    def _on_vmi(self, old: dict | None, new: dict | None) -> None:
        ref = controller_of(new or old)
        if ref is not None and ref.get("kind") == KIND:
            namespace = ((new or old).get("metadata") or {}).get("namespace")
            self.queue.add(f"{namespace}/{ref['name']}")

    def enqueue_all(self) -> None:
        for key in self.replica_sets.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        rs = self.replica_sets.get(key)
        if rs is None or phases.is_marked_for_deletion(rs):
            return
        spec = rs.get("spec") or {}
        namespace = rs["metadata"].get("namespace")
        selector = label_selector_from_dict(spec.get("selector"))
        owned = [v for v in self.vmis.items()
                 if (v.get("metadata") or {}).get("namespace") == namespace and is_controlled_by(v, rs)
                 and selector.matches(v)]
        finished = [v for v in owned if phases.is_final(v) and not phases.is_marked_for_deletion(v)]
        live = [v for v in owned if not phases.is_final(v) and not phases.is_marked_for_deletion(v)]
        error: str | None = None
        failed_deletes = 0
        if not spec.get("paused"):
            failed_deletes += await self._delete(finished)
            wanted = int(spec["replicas"]) if spec.get("replicas") is not None else 1
            diff = wanted - len(live)
            if diff > 0:
                created, error = await self._create(rs, min(diff, self.burst))
                live += created
            elif diff < 0:
                doomed = compute_deletion_order(live)[: min(-diff, self.burst)]
                failed_deletes += await self._delete(doomed)
                gone = {object_key(v) for v in doomed}
                live = [v for v in live if object_key(v) not in gone]
        now = format_time(self.clock.now())
        status = compute_replica_set_status(rs, live, compute_selector_text(spec.get("selector")), error, now)
        if status != (rs.get("status") or {}):
            try:
                stored = await self.store.update(REPLICA_SETS, {**rs, "status": status}, subresource="status")
            except NotFound:
                return
            self.replica_sets.assume(stored)
        if error:
            raise SyncError(error, reason=FAILED_CREATE)
        if failed_deletes:
            raise SyncError(f"failed to delete {failed_deletes} VMIs", reason=FAILED_DELETE)

    async def _create(self, rs: dict, count: int) -> tuple[list[dict], str | None]:
        now = format_micro_time(self.clock.now())
        template = apply_vmi_admission(compute_vmi_for_replica_set(rs, now=now))

        async def one() -> dict:
            return await self.store.create(VMIS, template)

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        created = [r for r in results if isinstance(r, dict)]
        for vmi in created:
            self.vmis.assume(vmi)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return created, f"failed to create {len(errors)} of {count} VMIs: {errors[0]}"
        return created, None

    async def _delete(self, vmis: list[dict]) -> int:
        """Delete ``vmis`` concurrently; returns how many deletes failed."""
        async def one(vmi: dict) -> bool:
            meta = vmi["metadata"]
            try:
                result = await self.store.delete(VMIS, meta.get("namespace"), meta["name"])
            except NotFound:
                self.vmis.assume_deleted(vmi)
                return True
            except ApiError as err:
                log.warning("delete of VMI %s failed: %s", object_key(vmi), err)
                return False
            if phases.is_marked_for_deletion(result):
                self.vmis.assume(result)
            else:
                self.vmis.assume_deleted(result)
            return True

        results = await asyncio.gather(*(one(v) for v in vmis))
        return sum(1 for ok in results if not ok)
