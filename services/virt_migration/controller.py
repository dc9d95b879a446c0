"""The migration controller: feeds :func:`phase_decision.compute_migration_action` from the caches
and carries its result out (:mod:`services.virt_migration.executor`).

One work queue of VMIM keys. A VMIM is queued when it changes, when its VMI changes, and —
because capacity or "who came first" may have changed — every Pending VMIM when a VMIM starts,
ends or goes away, or the KubeVirt object changes. Pending VMIMs are decided one at a time under
a lock, with counts from the cache, which already holds every transition this process wrote
(:meth:`Informer.assume`), so the limits hold however many VMIMs are reconciled at once.
Final VMIMs of a VMI beyond five are deleted when one more ends. A VMIM that vanished while its
migration was still in flight (deleted without the finalizer) gets its abort written on the VMI.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from services.virt_migration import vmi_writes
from services.virt_migration.configuration import (
    ClusterMigrationConfig,
    compute_cluster_config,
    compute_effective_migration,
    select_kubevirt,
)
from services.virt_migration.executor import MigrationWriter
from services.virt_migration.limits import MigrationCounts, MigrationLimits, WaitingMigration, compute_counts_for
from services.virt_migration.phase_decision import (
    MigrationAction,
    MigrationInputs,
    VmiChange,
    compute_migration_action,
    is_deleting,
    phase_of,
    uid_of,
    vmi_migration_state,
)
from services.virt_migration.siblings import (
    compute_backoff_until,
    compute_garbage,
    has_earlier_active,
    vmi_key_of,
)
from shared import migration_metrics, tracing
from shared.api.kubevirt import KubeVirt
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migration_vocabulary import RUNNING_MIGRATION_PHASES, MigrationPhase, is_final_migration_phase
from shared.api.migrationpolicy import MigrationPolicy
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import Phase, parse_time
from shared.clock import Clock, SystemClock
from shared.informer import Informer, key_of
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

DEFAULT_SCHEDULING_TIMEOUT = 300.0
"""Seconds a VMIM may wait in Scheduling for a target (KubeVirt: 5 min for an unschedulable pod)."""


class MigrationController:
    """Reconciles VMIMs.

    Args:
        vmims, vmis, policies, kubevirts: typed informers.
        writer: the store edge.
        scheduling_timeout: seconds in Scheduling before Failed.
    """

    def __init__(self, vmims: Informer[VirtualMachineInstanceMigration], vmis: Informer[VirtualMachineInstance],
                 policies: Informer[MigrationPolicy], kubevirts: Informer[KubeVirt], writer: MigrationWriter, *,
                 clock: Clock | None = None, scheduling_timeout: float = DEFAULT_SCHEDULING_TIMEOUT) -> None:
        self.vmims = vmims
        self.vmis = vmis
        self.policies = policies
        self.kubevirts = kubevirts
        self.writer = writer
        self.clock = clock or SystemClock()
        self.scheduling_timeout = scheduling_timeout
        self.queue = WorkQueue(name="migration")
        self.orphans = WorkQueue(name="migration-orphans")  # keys "<vmi key>|<migration uid>"
        self.by_vmi: dict[str, set[str]] = {}
        self._admission = asyncio.Lock()
        self.phase_log: list[tuple[str, str, float]] = []  # (vmim key, phase, monotonic s): for tests, bounded
        vmims.add_handler(self._on_vmim)
        vmis.add_handler(self._on_vmi)
        kubevirts.add_handler(lambda _old, _new: self.enqueue_pending())

    # -- cache events ------------------------------------------------------------------------
    def _on_vmim(self, old: VirtualMachineInstanceMigration | None,
                 new: VirtualMachineInstanceMigration | None) -> None:
        for obj, present in ((old, False), (new, True)):
            if obj is not None:
                keys = self.by_vmi.setdefault(vmi_key_of(obj), set())
                (keys.add if present else keys.discard)(key_of(obj))
                if not keys:
                    del self.by_vmi[vmi_key_of(obj)]
        if new is not None:
            self.queue.add(key_of(new))
        old_phase = phase_of(old) if old is not None else None
        new_phase = phase_of(new) if new is not None else None
        changed = new or old
        if changed is not None and (old_phase != new_phase or new is None):
            self.enqueue_pending()
            self.enqueue_vmi_key(vmi_key_of(changed))
        if new is None and old is not None and not is_final_migration_phase(old_phase):
            self.orphans.add(f"{vmi_key_of(old)}|{uid_of(old) or ''}")

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        vmi = new or old
        if vmi is not None:
            self.enqueue_vmi_key(key_of(vmi))

    def enqueue_vmi_key(self, vmi_key: str) -> None:
        """Queue every VMIM of the VMI ``namespace/name``."""
        for key in sorted(self.by_vmi.get(vmi_key, ())):
            self.queue.add(key)

    def enqueue_pending(self) -> None:
        """Queue every VMIM still waiting to start (unset or Pending)."""
        for vmim in self.vmims.items():
            if phase_of(vmim) in (MigrationPhase.UNSET, MigrationPhase.PENDING):
                self.queue.add(key_of(vmim))

    def enqueue_all(self) -> None:
        """Queue every cached VMIM, and every VMI whose migration in flight has no VMIM (after
        gaining leadership)."""
        for key in self.vmims.keys():
            self.queue.add(key)
        known = {uid_of(m) for m in self.vmims.items()}
        for vmi in self.vmis.items():
            moving = vmi_moving_uid(vmi)
            if moving and moving not in known:
                self.orphans.add(f"{key_of(vmi)}|{moving}")

    # -- inputs ------------------------------------------------------------------------------
    def cluster_config(self) -> ClusterMigrationConfig:
        """The installation's migration settings now (KubeVirt object over the defaults)."""
        return compute_cluster_config(select_kubevirt(self.kubevirts.items()))

    def siblings(self, vmim: VirtualMachineInstanceMigration) -> list[VirtualMachineInstanceMigration]:
        """The cached VMIMs of ``vmim``'s VMI (``vmim`` included)."""
        found = (self.vmims.get(k) for k in self.by_vmi.get(vmi_key_of(vmim), ()))
        return [m for m in found if m is not None]

    def source_node(self, vmim: VirtualMachineInstanceMigration) -> str | None:
        """The node ``vmim`` moves its VMI away from (its migration state's, else the VMI's)."""
        state = vmim.status.migration_state if vmim.status is not None else None
        if state is not None and state.source_node:
            return state.source_node
        vmi = self.vmis.get(vmi_key_of(vmim))
        return (vmi.status.node_name if vmi is not None and vmi.status is not None else None) or None

    def _waiting(self, vmim: VirtualMachineInstanceMigration, now: datetime) -> WaitingMigration | None:
        """``vmim`` as a Pending VMIM ready to start, else None."""
        if phase_of(vmim) != MigrationPhase.PENDING or is_deleting(vmim):
            return None
        vmi = self.vmis.get(vmi_key_of(vmim))
        if vmi is None or vmi.status is None or vmi.status.phase != Phase.RUNNING or not vmi.status.node_name:
            return None
        siblings = self.siblings(vmim)
        if has_earlier_active(vmim, siblings):
            return None
        until = compute_backoff_until(vmim, siblings)
        if until is not None and until > now:
            return None
        meta = vmim.metadata
        return WaitingMigration(key=key_of(vmim), created=(meta.creation_timestamp or "") if meta else "",
                                source_node=vmi.status.node_name)

    def counts_for(self, vmim: VirtualMachineInstanceMigration, limits: MigrationLimits,
                   now: datetime) -> MigrationCounts:
        """What Pending ``vmim`` counts against the limits (:func:`limits.compute_counts_for`)."""
        running: list[str | None] = []
        waiting: list[WaitingMigration] = []
        for other in self.vmims.items():
            if phase_of(other) in RUNNING_MIGRATION_PHASES:
                running.append(self.source_node(other))
            else:
                candidate = self._waiting(other, now)
                if candidate is not None:
                    waiting.append(candidate)
        mine = self._waiting(vmim, now)
        if mine is None:
            return MigrationCounts(cluster=len(running), source_node=running.count(self.source_node(vmim)))
        return compute_counts_for(mine.key, running, waiting, limits)

    def inputs_for(self, vmim: VirtualMachineInstanceMigration, cluster: ClusterMigrationConfig,
                   now: datetime) -> MigrationInputs:
        """The decision's inputs for ``vmim`` (counts only for a Pending one)."""
        siblings = self.siblings(vmim)
        limits = MigrationLimits(cluster=cluster.parallel_migrations_per_cluster,
                                 per_node=cluster.parallel_outbound_migrations_per_node)
        counts = self.counts_for(vmim, limits, now) if phase_of(vmim) == MigrationPhase.PENDING \
            else MigrationCounts()
        return MigrationInputs(earlier_active=has_earlier_active(vmim, siblings), counts=counts, limits=limits,
                               scheduling_timeout=self.scheduling_timeout,
                               backoff_until=compute_backoff_until(vmim, siblings))

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        """Decide and carry out the next step of VMIM ``key``. Conflict propagates (requeue)."""
        vmim = self.vmims.get(key)
        if vmim is None:
            return
        if phase_of(vmim) == MigrationPhase.PENDING:
            async with self._admission:  # one admission at a time: counts include the previous write
                await self._reconcile(key)
        else:
            await self._reconcile(key)

    async def _reconcile(self, key: str) -> None:
        vmim = self.vmims.get(key)
        if vmim is None:
            return
        vmi = self.vmis.get(vmi_key_of(vmim))
        now = self.clock.now()
        cluster = self.cluster_config()
        action = compute_migration_action(vmim, vmi, self.inputs_for(vmim, cluster, now), now)
        await self.execute(vmim, vmi, action, cluster, now)
        if action.requeue_after is not None:
            self.queue.add_after(key, action.requeue_after + 0.05)

    async def execute(self, vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance | None,
                      action: MigrationAction, cluster: ClusterMigrationConfig, now: datetime) -> None:
        """Carry ``action`` out: VMIM status (before an abort), VMI write, VMIM status (after a
        hand-off or finish), finalizer, garbage collection, Events, metrics."""
        uid = uid_of(vmim) or ""
        current: VirtualMachineInstanceMigration | None = vmim
        if action.status is not None and action.vmi_change != VmiChange.FINISH:
            current = await self.writer.write_vmim_status(vmim, action.status)
            if current is None:
                return
            self._observe(vmim, action, now)
        if action.vmi_change is not None and vmi is not None:
            await self._write_vmi(vmim, vmi, action.vmi_change, cluster, now)
        if action.status is not None and action.vmi_change == VmiChange.FINISH and current is not None:
            current = await self.writer.write_vmim_status(current, action.status)
        if action.remove_finalizer and current is not None:
            await self.writer.remove_finalizer(current)
        if action.phase is not None and action.phase in (MigrationPhase.SUCCEEDED, MigrationPhase.FAILED):
            await self._collect_garbage(vmim)
        for note in action.events:
            target: Any = vmi if note.on_vmi else (current or vmim)
            if target is not None:
                await self.writer.record(target, "VirtualMachineInstance" if note.on_vmi
                                         else "VirtualMachineInstanceMigration", note.type, note.reason, note.message)
        if action.phase == MigrationPhase.FAILED and vmi is not None and uid:
            last = action.events[-1].message if action.events else ""
            await self.writer.record(vmi, "VirtualMachineInstance", "Warning", "FailedMigration",
                                     f"VirtualMachineInstance migration uid {uid} failed. reason: {last}")

    async def _write_vmi(self, vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance,
                         change: VmiChange, cluster: ClusterMigrationConfig, now: datetime) -> None:
        uid = uid_of(vmim) or ""
        if change == VmiChange.HANDOFF:
            meta = vmi.metadata
            effective = compute_effective_migration(cluster, self.policies.items(), meta.labels if meta else None,
                                                    meta.namespace if meta else None)
            state = vmim.status.migration_state if vmim.status is not None else None
            target = (state.target_node if state is not None else None) or ""
            annotations = (vmim.metadata.annotations if vmim.metadata is not None else None) or {}
            traceparent = annotations.get(tracing.TRACEPARENT_ANNOTATION)
            await self.writer.write_vmi(
                vmi, lambda v: vmi_writes.compute_handoff(v, uid, target, effective, traceparent), status_only=False)
        elif change == VmiChange.ABORT:
            await self.writer.write_vmi(vmi, lambda v: vmi_writes.compute_abort(v, uid, now), status_only=True)
        else:
            succeeded = phase_of(vmim) == MigrationPhase.SUCCEEDED
            await self.writer.write_vmi(vmi, lambda v: vmi_writes.compute_finish(v, uid, succeeded),
                                        status_only=False)

    def _observe(self, vmim: VirtualMachineInstanceMigration, action: MigrationAction, now: datetime) -> None:
        if action.phase is None or action.phase == phase_of(vmim):
            return
        created = parse_time(vmim.metadata.creation_timestamp if vmim.metadata else None)
        if created is not None:
            migration_metrics.observe_migration_phase(action.phase, (now - created).total_seconds())
        if len(self.phase_log) < 100_000:
            self.phase_log.append((key_of(vmim), action.phase, asyncio.get_running_loop().time()))
        log.info("migration %s: %s -> %s", key_of(vmim), phase_of(vmim) or '""', action.phase)

    async def _collect_garbage(self, vmim: VirtualMachineInstanceMigration) -> None:
        for old in compute_garbage(self.siblings(vmim)):
            await self.writer.delete_vmim(old)

    async def reconcile_orphan(self, key: str) -> None:
        """``key`` = ``<vmi key>|<uid>``: when the VMI's migration ``uid`` is still in flight and no
        VMIM of that uid exists (deleted without the finalizer), request its abort on the VMI."""
        vmi_key, _, uid = key.rpartition("|")
        vmi = self.vmis.get(vmi_key)
        if vmi is None or not uid or vmi_moving_uid(vmi) != uid:
            return
        if any(uid_of(m) == uid for m in self.vmims.items()):
            return
        now = self.clock.now()
        await self.writer.write_vmi(vmi, lambda v: vmi_writes.compute_abort(v, uid, now), status_only=True)
        log.info("migration %s of VMI %s has no VMIM any more: abort requested", uid, vmi_key)

    # -- metrics -----------------------------------------------------------------------------
    def phase_groups(self) -> dict[str, int]:
        """VMIMs per KubeVirt metric group (unset, pending, scheduling, running)."""
        groups = {"unset": 0, "pending": 0, "scheduling": 0, "running": 0}
        for vmim in self.vmims.items():
            phase = phase_of(vmim)
            if phase == MigrationPhase.UNSET:
                groups["unset"] += 1
            elif phase == MigrationPhase.PENDING:
                groups["pending"] += 1
            elif phase == MigrationPhase.SCHEDULING:
                groups["scheduling"] += 1
            elif phase in RUNNING_MIGRATION_PHASES:
                groups["running"] += 1
        return groups


def vmi_moving_uid(vmi: VirtualMachineInstance | None) -> str | None:
    """The uid of the migration the VMI's state describes, while it has not ended."""
    state = vmi_migration_state(vmi)
    if state is None or state.completed or state.failed:
        return None
    return state.migration_uid
