"""VirtualMachineInstanceReplicaSet controller: keep ``spec.replicas`` VMIs from the template.

After KubeVirt's ``pkg/virt-controller/watch/replicaset``: VMIs the replica set controls (its
controller ownerReference) that are final are deleted and replaced; missing ones are created
with ``generateName: <replica set name>``; extras are deleted, the least advanced first (not yet
placed before placed, not ready before ready, newest first). At most ``burst`` creates or deletes
run per pass (KubeVirt's ``BurstReplicas``, 250). ``status.replicas`` counts live VMIs,
``readyReplicas`` those with ``Ready=True``; ``labelSelector`` is the selector as a string.
Creates and deletes are put into the informer cache at once (read-your-writes), so the next
pass never creates the same replica twice. ``spec.paused`` stops scaling. A replica set's VMIs
come from an index of the VMI cache by controller uid (no scan of every VMI per pass).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from msgspec.structs import replace

from services.virt_controller import phases
from services.virt_controller.admission import apply_vmi_admission
from shared.clock import Clock, SystemClock
from services.virt_controller.conditions import (
    has_condition,
    with_condition,
    without_condition,
)
from services.virt_controller.key_index import KeyIndex
from shared.sync_error import SyncError
from services.virt_controller.typed_writes import (
    assume_delete_result,
    assume_stored,
)
from services.virt_controller.vmi_template import (
    compute_vmi_for_replica_set,
    controller_of,
    is_controlled_by,
)
from shared.api.decoding import encode_object
from shared.api.meta import Condition, LabelSelector
from shared.api.replicaset import (
    VirtualMachineInstanceReplicaSet,
    VirtualMachineInstanceReplicaSetStatus,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import (
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
    format_micro_time,
    format_time,
)
from shared.errors import ApiError, NotFound
from shared.informer import Informer, key_of
from shared.store import label_selector_from_dict
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

REPLICA_SETS = "virtualmachineinstancereplicasets"
VMIS = "virtualmachineinstances"
KIND = "VirtualMachineInstanceReplicaSet"
DEFAULT_BURST = 250
_PHASE_RANK = {"": 0, Phase.PENDING: 0, Phase.SCHEDULING: 1, Phase.SCHEDULED: 2, Phase.UNKNOWN: 3,
               Phase.RUNNING: 4}


def _is_ready(vmi: VirtualMachineInstance) -> bool:
    return has_condition(vmi.status.conditions if vmi.status is not None else None, ConditionType.READY)


def compute_deletion_order(vmis: Sequence[VirtualMachineInstance]) -> list[VirtualMachineInstance]:
    """VMIs sorted so the first ones are the best to delete when scaling down (pure)."""
    def rank(vmi: VirtualMachineInstance) -> tuple[int, int, str]:
        created = (vmi.metadata.creation_timestamp if vmi.metadata is not None else None) or ""
        # newest first: invert the timestamp's ordering through a negated character map
        inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)
        return (_PHASE_RANK.get(phases.phase_of(vmi), 0), 1 if _is_ready(vmi) else 0, inverted)
    return sorted(vmis, key=rank)


def compute_replica_failure(conditions: Sequence[Condition] | None, error: str | None,
                            now: str) -> list[Condition] | None:
    """``conditions`` with ``ReplicaFailure=True/FailedCreate`` while ``error`` is set, without it
    otherwise (None when no condition is left). Shared with the pool controller (pure)."""
    if error:
        new = with_condition(conditions, Condition(
            type=ConditionType.REPLICA_FAILURE, status=ConditionStatus.TRUE, reason=Reason.FAILED_CREATE,
            message=error), now)
    else:
        new = without_condition(conditions, ConditionType.REPLICA_FAILURE)
    return new or None


def compute_replica_set_status(rs: VirtualMachineInstanceReplicaSet, live: Sequence[VirtualMachineInstance],
                               selector_text: str, error: str | None,
                               now: str) -> VirtualMachineInstanceReplicaSetStatus:
    """The replica set's status from its live VMIs (pure)."""
    status = rs.status or VirtualMachineInstanceReplicaSetStatus()
    return replace(status, replicas=len(live), ready_replicas=sum(1 for v in live if _is_ready(v)),
                   label_selector=selector_text,
                   conditions=compute_replica_failure(status.conditions, error, now))


def compute_selector_text(selector: LabelSelector | None) -> str:
    """A label selector in ``kubectl``'s text form (``status.labelSelector``, pure)."""
    if selector is None:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or ():
        op = expr.operator
        if op == "Exists":
            parts.append(expr.key)
        elif op == "DoesNotExist":
            parts.append(f"!{expr.key}")
        else:
            parts.append(f"{expr.key} {op.lower()} ({','.join(expr.values or [])})")
    return ",".join(parts)


def controller_uid_of(obj: Any, kind: str) -> str | None:
    """The uid of ``obj``'s controller when it is a ``kind`` (index function)."""
    ref = controller_of(obj)
    return ref.uid if ref is not None and ref.kind == kind else None


class ReplicaSetController:
    """Reconciles VirtualMachineInstanceReplicaSets.

    Args:
        store: ObjectStore.
        replica_sets, vmis: typed informers (``decode=VirtualMachineInstanceReplicaSet`` /
            ``decode=VirtualMachineInstance``).
        burst: maximum creates/deletes per pass.
    """

    def __init__(self, store: Any, replica_sets: Informer[VirtualMachineInstanceReplicaSet],
                 vmis: Informer[VirtualMachineInstance], queue: WorkQueue | None = None, *,
                 clock: Clock | None = None, burst: int = DEFAULT_BURST) -> None:
        self.store = store
        self.replica_sets = replica_sets
        self.vmis = vmis
        self.queue = queue or WorkQueue(name="vmirs")
        self.clock = clock or SystemClock()
        self.burst = burst
        self.by_owner: KeyIndex[VirtualMachineInstance] = KeyIndex(vmis, lambda v: controller_uid_of(v, KIND))
        replica_sets.add_handler(lambda old, new: self.queue.add(key_of(new or old)))
        vmis.add_handler(self._on_vmi)

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        obj = new or old
        ref = controller_of(obj)
        if obj is not None and ref is not None and ref.kind == KIND:
            namespace = obj.metadata.namespace if obj.metadata is not None else None
            self.queue.add(f"{namespace}/{ref.name}")

    def enqueue_all(self) -> None:
        """Queue every cached replica set (after gaining leadership)."""
        for key in self.replica_sets.keys():
            self.queue.add(key)

    def owned(self, rs: VirtualMachineInstanceReplicaSet) -> list[VirtualMachineInstance]:
        """The cached VMIs ``rs`` controls that match its selector (from the owner index)."""
        meta = rs.metadata
        if meta is None or not meta.uid:
            return []
        selector = label_selector_from_dict(encode_object(rs.spec.selector))
        found = (self.vmis.get(key) for key in self.by_owner.keys(meta.uid))
        return [v for v in found if v is not None and v.metadata is not None
                and v.metadata.namespace == meta.namespace and is_controlled_by(v, rs)
                and selector.matches(v.metadata.labels or {})]

    async def reconcile(self, key: str) -> None:
        """Converge one replica set: replace final VMIs, scale to ``spec.replicas``, write status."""
        rs = self.replica_sets.get(key)
        if rs is None or phases.is_marked_for_deletion(rs):
            return
        spec = rs.spec
        owned = self.owned(rs)
        finished = [v for v in owned if phases.is_final(v) and not phases.is_marked_for_deletion(v)]
        live = [v for v in owned if not phases.is_final(v) and not phases.is_marked_for_deletion(v)]
        error: str | None = None
        failed_deletes = 0
        if not spec.paused:
            failed_deletes += await self._delete(finished)
            wanted = int(spec.replicas) if spec.replicas is not None else 1
            diff = wanted - len(live)
            if diff > 0:
                created, error = await self._create(rs, min(diff, self.burst))
                live += created
            elif diff < 0:
                doomed = compute_deletion_order(live)[: min(-diff, self.burst)]
                failed_deletes += await self._delete(doomed)
                gone = {key_of(v) for v in doomed}
                live = [v for v in live if key_of(v) not in gone]
        now = format_time(self.clock.now())
        status = compute_replica_set_status(rs, live, compute_selector_text(spec.selector), error, now)
        if status != (rs.status or VirtualMachineInstanceReplicaSetStatus()):
            body = {"metadata": encode_object(rs.metadata), "status": encode_object(status)}
            try:
                stored = await self.store.update(REPLICA_SETS, body, subresource="status")
            except NotFound:
                return
            self.replica_sets.assume(stored)
        if error:
            raise SyncError(error, reason=Reason.FAILED_CREATE)
        if failed_deletes:
            raise SyncError(f"failed to delete {failed_deletes} VMIs", reason=Reason.FAILED_DELETE)

    async def _create(self, rs: VirtualMachineInstanceReplicaSet,
                      count: int) -> tuple[list[VirtualMachineInstance], str | None]:
        now = format_micro_time(self.clock.now())
        template = apply_vmi_admission(compute_vmi_for_replica_set(rs, now=now))

        async def one() -> dict[str, Any]:
            created: dict[str, Any] = await self.store.create(VMIS, template)
            return created

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        created = [typed for r in results if isinstance(r, dict)
                   if (typed := assume_stored(self.vmis, r)) is not None]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return created, f"failed to create {len(errors)} of {count} VMIs: {errors[0]}"
        return created, None

    async def _delete(self, vmis: list[VirtualMachineInstance]) -> int:
        """Delete ``vmis`` concurrently; returns how many deletes failed."""
        async def one(vmi: VirtualMachineInstance) -> bool:
            meta = vmi.metadata
            assert meta is not None and meta.name  # cached objects are keyed by name
            try:
                result = await self.store.delete(VMIS, meta.namespace, meta.name)
            except NotFound:
                self.vmis.assume_deleted(vmi)
                return True
            except ApiError as err:
                log.warning("delete of VMI %s failed: %s", key_of(vmi), err)
                return False
            assume_delete_result(self.vmis, vmi, result)
            return True

        results = await asyncio.gather(*(one(v) for v in vmis))
        return sum(1 for ok in results if not ok)


__all__ = ["ReplicaSetController", "compute_deletion_order", "compute_replica_set_status",
           "compute_selector_text"]
