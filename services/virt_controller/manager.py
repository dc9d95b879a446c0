"""The controller manager: shared informers, the controllers, their workers, leader election.

Every replica runs the informers all the time (standbys keep their caches and queues hot); only
the leader runs workers and the node heartbeat monitor. Losing the lease cancels them at once;
the next leader starts by queueing every cached object, so nothing depends on events it missed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from shared.clock import Clock, SystemClock
from shared.leader import LeaderElector
from services.virt_controller.observer import VMIObserver
from services.virt_controller.pool_controller import POOLS, PoolController
from services.virt_controller.reconcile_tracing import compute_traced_reconcile
from services.virt_controller.replicaset_controller import (
    REPLICA_SETS,
    ReplicaSetController,
)
from services.virt_controller.vm_controller import VMS, VMController
from services.virt_controller.vmi_controller import VMIS, VMIController
from shared.node_fencing import DEFAULT_FENCE_MARGIN, DEFAULT_HEARTBEAT_TIMEOUT
from shared.leader_process import LeaderElectedProcess
from shared.workers import start_workers
from shared.api.pool import VirtualMachinePool
from shared.api.replicaset import VirtualMachineInstanceReplicaSet
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.events_recorder import EventRecorder
from shared.informer import Informer

log = logging.getLogger(__name__)


class ControllerManager(LeaderElectedProcess):
    """All virt-controller loops over one ObjectStore.

    Args:
        store: ObjectStore.
        identity: this replica's id (lease holder identity).
        workers: worker tasks per controller.
        lease_duration, renew_deadline, retry_period: leader election timing (seconds).
        heartbeat_timeout: seconds without node heartbeat before the VMIs of a fencing node become
            Failed (``shared.node_fencing``).
        fence_margin: seconds a node's ``fence_after`` must stay below ``heartbeat_timeout``.
    """

    def __init__(self, store: Any, identity: str, *, workers: int = 4, clock: Clock | None = None,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, fence_margin: float = DEFAULT_FENCE_MARGIN,
                 lease_namespace: str = "kubevirt") -> None:
        self.store = store
        self.identity = identity
        self.workers = workers
        self.clock = clock or SystemClock()
        self.vm_informer = Informer(store, VMS, decode=VirtualMachine)
        self.vmi_informer = Informer(store, VMIS, decode=VirtualMachineInstance)
        self.node_informer = Informer(store, "nodes")
        self.rs_informer = Informer(store, REPLICA_SETS, decode=VirtualMachineInstanceReplicaSet)
        self.pool_informer = Informer(store, POOLS, decode=VirtualMachinePool)
        self.recorder = EventRecorder(store, "virt-controller")
        self.observer = VMIObserver(self.vmi_informer, self.recorder, lambda: self.is_leader)
        self.vm_controller = VMController(store, self.vm_informer, self.vmi_informer, clock=self.clock,
                                          report=self._report_vm)
        self.vmi_controller = VMIController(store, self.vmi_informer, self.node_informer, clock=self.clock,
                                            heartbeat_timeout=heartbeat_timeout, fence_margin=fence_margin)
        self.rs_controller = ReplicaSetController(store, self.rs_informer, self.vmi_informer, clock=self.clock)
        self.pool_controller = PoolController(store, self.pool_informer, self.vm_informer, clock=self.clock)
        self.elector = LeaderElector(store, identity, namespace=lease_namespace, lease_duration=lease_duration,
                                     renew_deadline=renew_deadline, retry_period=retry_period, clock=self.clock)
        self.informers: list[Informer[Any]] = [self.vm_informer, self.vmi_informer, self.node_informer,
                                               self.rs_informer, self.pool_informer]
        self.controllers: list[Any] = [self.vm_controller, self.vmi_controller, self.rs_controller,
                                       self.pool_controller]

    def _report_vm(self, vm: VirtualMachine, event_type: str, reason: str, message: str) -> None:
        self.observer.record({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", **msgspec.to_builtins(vm)},
                             event_type, reason, message)

    def leader_tasks(self) -> list[asyncio.Task[Any]]:
        """Every controller's workers (each starting from its whole cache) and the node monitor."""
        tasks: list[asyncio.Task[Any]] = []
        for controller in self.controllers:
            controller.enqueue_all()
            name = type(controller).__name__
            tasks += start_workers(controller.queue, compute_traced_reconcile(controller), self.workers, name=name)
        tasks.append(asyncio.create_task(self.vmi_controller.monitor_nodes(), name="node-monitor"))
        return tasks
