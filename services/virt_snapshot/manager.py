"""virt-snapshot's process: informers, the controllers, their workers, leader election.

Like virt-migration: every replica keeps its informers (VMs, VMIs, snapshots, contents,
restores, PVCs) warm; only the holder of the Lease ``kubevirt/virt-snapshot``
(:class:`shared.leader.LeaderElector`) runs workers, and it starts by queueing every cached
object of every controller, so a new leader continues whatever the old one left half done
(each step of every controller is idempotent).

A controller is any object with ``queue`` (a :class:`shared.workqueue.WorkQueue`),
``enqueue_all()`` and ``async reconcile(key)``; one that also has
``traced_object(key) -> (span name, object dict, version | None) | None`` gets each reconcile in a span joined to
that object's trace (:func:`shared.tracing.object_span`). Controllers are built in
:meth:`SnapshotManager.build_controllers` from the shared :class:`SnapshotParts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.virt_snapshot.content_controller import ContentController
from services.virt_snapshot.embedded_snapshotter import EmbeddedSnapshotter
from services.virt_snapshot.handler_client import HandlerClient
from services.virt_snapshot.parts import CONTENTS, PVCS, RESTORES, SNAPSHOTS, VMIS, VMS, SnapshotParts
from services.virt_snapshot.provisioner_controller import ProvisionerController
from services.virt_snapshot.restore_controller import RestoreController
from services.virt_snapshot.snapshot_controller import SnapshotController
from services.virt_snapshot.store_claims import StoreClaims
from services.virt_snapshot.volume_snapshotter import VolumeSnapshotter
from shared import snapshot_metrics, tracing
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.clock import Clock, SystemClock
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.leader import LeaderElector
from shared.leader_process import LeaderElectedProcess
from shared.workers import start_workers
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

SERVICE = "virt-snapshot"
LEASE_NAME = "virt-snapshot"


class Controller(Protocol):
    """What the manager runs (see the module docstring)."""

    queue: WorkQueue

    def enqueue_all(self) -> None: ...

    def reconcile(self, key: str) -> Awaitable[None]: ...


@dataclass
class ControllerEntry:
    """A controller with its name (task names, logs) and worker count."""

    name: str
    controller: Controller
    workers: int


class SnapshotManager(LeaderElectedProcess):
    """All virt-snapshot loops over one ObjectStore.

    Args:
        store: ObjectStore (its ``bus`` carries the handler commands unless ``handlers`` is given).
        identity: this replica's id (lease holder identity).
        storage_dir: the installation's state directory (claims under ``pvcs``, copies under
            ``volume-snapshots``).
        workers: worker tasks per controller.
        snapshotter: the VolumeSnapshotter (default: the embedded one).
        handlers: HandlerClient (default: one on ``store.bus``).
        lease_duration, renew_deadline, retry_period: leader election timing (seconds).
    """

    def __init__(self, store: Any, identity: str, *, storage_dir: Path, workers: int = 2,
                 clock: Clock | None = None, snapshotter: VolumeSnapshotter | None = None,
                 handlers: HandlerClient | None = None, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 lease_namespace: str = "kubevirt") -> None:
        self.store = store
        self.identity = identity
        self.workers = workers
        self.clock = clock or SystemClock()
        storage_dir = Path(storage_dir)
        bus = getattr(store, "bus", None)
        if handlers is None and bus is not None:
            handlers = HandlerClient(bus)
        copies_dir = storage_dir / "volume-snapshots"
        pvc_root = storage_dir / "pvcs"
        pvcs = Informer(store, PVCS, decode=PersistentVolumeClaim)
        if snapshotter is None:
            snapshotter = EmbeddedSnapshotter(pvc_root=pvc_root, copies_dir=copies_dir, handlers=handlers,
                                              claims=StoreClaims(store, pvcs))
        self.parts = SnapshotParts(
            store=store,
            vms=Informer(store, VMS, decode=VirtualMachine),
            vmis=Informer(store, VMIS, decode=VirtualMachineInstance),
            snapshots=Informer(store, SNAPSHOTS, decode=VirtualMachineSnapshot),
            contents=Informer(store, CONTENTS, decode=VirtualMachineSnapshotContent),
            restores=Informer(store, RESTORES, decode=VirtualMachineRestore),
            pvcs=pvcs,
            recorder=EventRecorder(store, SERVICE), clock=self.clock, snapshotter=snapshotter,
            handlers=handlers, storage_dir=storage_dir, pvc_root=pvc_root, copies_dir=copies_dir)
        p = self.parts
        self.informers: list[Informer[Any]] = [p.vms, p.vmis, p.snapshots, p.contents, p.restores, p.pvcs]
        self.controllers: list[ControllerEntry] = []
        self.build_controllers()
        self.elector = LeaderElector(store, identity, name=LEASE_NAME, namespace=lease_namespace,
                                     lease_duration=lease_duration, renew_deadline=renew_deadline,
                                     retry_period=retry_period, clock=self.clock)
        snapshot_metrics.register_snapshot_source(self)

    def build_controllers(self) -> None:
        """Create every controller on :attr:`parts` (the one place to add a controller)."""
        self.snapshot_controller = SnapshotController(self.parts)
        self.content_controller = ContentController(self.parts)
        self.add_controller("snapshot", self.snapshot_controller)
        self.add_controller("content", self.content_controller)
        self.provisioner_controller = ProvisionerController.from_parts(self.parts)
        self.restore_controller = RestoreController.from_parts(self.parts)
        self.add_controller("provisioner", self.provisioner_controller)
        self.add_controller("restore", self.restore_controller)

    def add_controller(self, name: str, controller: Controller, workers: int | None = None) -> None:
        """Run ``controller`` with ``workers`` tasks (default: the manager's count) while leading."""
        self.controllers.append(ControllerEntry(name, controller, workers or self.workers))

    def snapshot_samples(self) -> list[VirtualMachineSnapshot] | None:
        """The cached snapshots for the metrics (None while standing by)."""
        return self.parts.snapshots.items() if self.is_leader else None

    def _traced(self, name: str, controller: Controller) -> Callable[[str], Awaitable[None]]:
        traced_object: Callable[[str], tuple[str, Mapping[str, Any] | None, str | None] | None] | None = getattr(
            controller, "traced_object", None)

        async def reconcile(key: str) -> None:
            target = traced_object(key) if traced_object is not None and tracing.is_enabled() else None
            if target is None:
                await controller.reconcile(key)
                return
            span_name, body, version = target
            await tracing.traced_reconcile(SERVICE, span_name, body, lambda: controller.reconcile(key), version=version)
        return reconcile

    def leader_tasks(self) -> list[asyncio.Task[None]]:
        """The workers of every controller, each queue starting from the whole cache."""
        tasks: list[asyncio.Task[None]] = []
        for entry in self.controllers:
            entry.controller.enqueue_all()
            tasks += start_workers(entry.controller.queue, self._traced(entry.name, entry.controller),
                                   entry.workers, name=entry.name)
        return tasks

    def on_stop(self) -> None:
        """Stop reporting metrics."""
        snapshot_metrics.unregister_snapshot_source(self)
