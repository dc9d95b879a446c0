"""virt-migration's process: informers, the two controllers, their workers, leader election.

Like virt-controller: every replica keeps its informers (VMIMs, VMIs, Nodes, MigrationPolicies,
KubeVirt objects) warm; only the holder of the Lease ``kubevirt/virt-migration``
(:class:`shared.leader.LeaderElector`) runs workers, and it starts by queueing every cached
object, so nothing depends on events a standby saw or missed. Each reconcile of a VMIM runs in a
span under the VMIM's trace context (``reconcile VirtualMachineInstanceMigration``).

Workers are :func:`shared.workers.run_worker` (client-go's pattern: success forgets a key's
backoff; a Conflict or any failure requeues it with the queue's rate-limited backoff).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.virt_migration.controller import (
    DEFAULT_SCHEDULING_TIMEOUT,
    DEFAULT_TARGET_READY_TIMEOUT,
    MigrationController,
)
from services.virt_migration.evacuation_controller import EvacuationController
from services.virt_migration.executor import MigrationWriter, as_body
from services.virt_migration.phase_decision import phase_of
from shared import migration_metrics, tracing
from shared.api.kubevirt import KubeVirt
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migration_vocabulary import MigrationPhase
from shared.api.migrationpolicy import MigrationPolicy
from shared.api.vmi import VirtualMachineInstance
from shared.clock import Clock, SystemClock
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.leader import LeaderElector
from shared.leader_process import LeaderElectedProcess
from shared.workers import start_workers

log = logging.getLogger(__name__)

SERVICE = "virt-migration"
LEASE_NAME = "virt-migration"


class MigrationManager(LeaderElectedProcess):
    """All virt-migration loops over one ObjectStore.

    Args:
        store: ObjectStore.
        identity: this replica's id (lease holder identity).
        workers: worker tasks for the migration queue (evacuation and orphans get one each).
        lease_duration, renew_deadline, retry_period: leader election timing (seconds).
        scheduling_timeout: seconds a VMIM may wait for a target.
        target_ready_timeout: seconds from PreparingTarget until the source must have started.
    """

    def __init__(self, store: Any, identity: str, *, workers: int = 4, clock: Clock | None = None,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 scheduling_timeout: float = DEFAULT_SCHEDULING_TIMEOUT, lease_namespace: str = "kubevirt",
                 target_ready_timeout: float = DEFAULT_TARGET_READY_TIMEOUT) -> None:
        self.store = store
        self.identity = identity
        self.workers = workers
        self.clock = clock or SystemClock()
        self.vmim_informer = Informer(store, "virtualmachineinstancemigrations", decode=VirtualMachineInstanceMigration)
        self.vmi_informer = Informer(store, "virtualmachineinstances", decode=VirtualMachineInstance)
        self.node_informer = Informer(store, "nodes")
        self.policy_informer = Informer(store, "migrationpolicies", decode=MigrationPolicy)
        self.kubevirt_informer = Informer(store, "kubevirts", decode=KubeVirt)
        self.recorder = EventRecorder(store, SERVICE)
        self.writer = MigrationWriter(store, self.vmim_informer, self.vmi_informer, self.recorder)
        self.migrations = MigrationController(self.vmim_informer, self.vmi_informer, self.policy_informer,
                                              self.kubevirt_informer, self.writer, clock=self.clock,
                                              scheduling_timeout=scheduling_timeout,
                                              target_ready_timeout=target_ready_timeout)
        self.evacuation = EvacuationController(self.node_informer, self.vmi_informer, self.vmim_informer,
                                               self.migrations, self.writer)
        self.elector = LeaderElector(store, identity, name=LEASE_NAME, namespace=lease_namespace,
                                     lease_duration=lease_duration, renew_deadline=renew_deadline,
                                     retry_period=retry_period, clock=self.clock)
        self.informers: list[Informer[Any]] = [self.vmim_informer, self.vmi_informer, self.node_informer,
                                               self.policy_informer, self.kubevirt_informer]
        migration_metrics.register_migration_source(self)

    def migration_samples(self) -> migration_metrics.MigrationSamples | None:
        """The metric values of this replica (None while standing by)."""
        if not self.is_leader:
            return None
        samples = migration_metrics.MigrationSamples(phases=self.migrations.phase_groups(),
                                                     non_evictable=self.evacuation.non_evictable())
        for vmim in self.vmim_informer.items():
            meta = vmim.metadata
            labels = (vmim.spec.vmi_name or "", meta.name or "" if meta else "", meta.namespace or "" if meta else "")
            if phase_of(vmim) == MigrationPhase.SUCCEEDED:
                samples.succeeded.append(labels)
            elif phase_of(vmim) == MigrationPhase.FAILED:
                samples.failed.append(labels)
        return samples

    async def _traced_reconcile(self, key: str) -> None:
        vmim = self.vmim_informer.get(key)
        view = as_body(vmim, "VirtualMachineInstanceMigration") if vmim is not None and tracing.is_enabled() else None
        await tracing.traced_reconcile(SERVICE, "reconcile VirtualMachineInstanceMigration", view,
                                       lambda: self.migrations.reconcile(key))

    def leader_tasks(self) -> list[asyncio.Task[Any]]:
        """The migration, orphan and evacuation workers, each queue starting from the whole cache."""
        self.migrations.enqueue_all()
        self.evacuation.enqueue_all()
        tasks = start_workers(self.migrations.queue, self._traced_reconcile, self.workers, name="migration")
        tasks += start_workers(self.migrations.orphans, self.migrations.reconcile_orphan, 1, name="migration-orphans")
        tasks += start_workers(self.evacuation.queue, self.evacuation.reconcile, 1, name="evacuation")
        return tasks

    def on_stop(self) -> None:
        """Stop reporting metrics."""
        migration_metrics.unregister_migration_source(self)
