"""virt-handler's VMI sync loop on one node: VMIs placed here become libvirt domains and back.

``VmiAgent`` wires the parts (KubeVirt's ``pkg/virt-handler/vm.go`` in spirit):

- the VMIs whose ``status.nodeName`` is this node, or whose ``migrationState.targetNode`` is
  (an incoming live migration), or whose files are still here, from the shared informer
  (``shared.informer``: list, then watch; relist on ``Gone``), and the shared rate-limited
  work queue (``shared.workqueue``) of ``<namespace>/<name>`` keys woken by VMI changes,
  libvirt domain events (``domain_events``) and a periodic resync;
- workers that sync one key at a time: ``sync_decision.compute_sync_action`` decides (start,
  adopt, live status, ACPI stop then destroy after the grace period, finish, remove a stale
  domain, mark Failed), ``sync_executor`` performs it; a failed sync is retried with
  exponential backoff;
- the migration roles (``migration_decision``/``migration_executor``: target preparation and
  ownership take-over, the source's transfer in ``migration_runner``), decided before the sync;
- the command server (``commands``: pause, unpause, soft reboot, guest OS info, freeze/unfreeze
  with the persisted unfreeze deadline (``freeze``), backups of running disks (``backup``));
- the per-VMI files (``vmi_files``: ``<state_dir>/vmis/<uid>/``, ``vmi.json``, ownership: only
  domains this handler made are ever touched, so handlers sharing one libvirt leave each
  other alone).

Stopping leaves every domain as it is; a restarted agent adopts them without restarting any.
While ``fenced`` (set by the self-fence, ``fencing``: the node could not write its heartbeat) no
VMI is synced: every key is looked at again after ``FENCED_RECHECK_SECONDS``.
Node registration and heartbeat are ``node.py``; domain XML is ``domain/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.virt_handler.backup import BackupKeeper
from services.virt_handler.commands import CommandServer
from services.virt_handler.domain import DEFAULT_PVC_ROOT, ImageResolver
from services.virt_handler.domain_events import DomainEventRelay, compute_key_of_domain
from services.virt_handler.freeze import FreezeKeeper
from services.virt_handler.hypervisor_types import HypervisorError
from services.virt_handler.migration_decision import is_migration_in_flight
from services.virt_handler.migration_executor import MigrationExecutor
from services.virt_handler.sync_decision import compute_grace_seconds
from services.virt_handler.sync_executor import (
    SERVICE,
    VMIS,
    SyncExecutor,
    SyncState,
    decode_vmi,
)
from services.virt_handler.vmi_files import VmiFiles
from shared import handler_migration_metrics as migration_metrics
from shared import tracing
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import object_key, utc_now
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.tasks import cancel_and_wait
from shared.workqueue import WorkQueue, compute_item_delay

__all__ = ["AgentConfig", "VmiAgent", "compute_domain_type", "is_test_driver_uri",
           "compute_grace_seconds", "compute_item_delay", "compute_key_of_domain", "describe"]

log = logging.getLogger(__name__)

#: while fenced, a key is looked at again after this many seconds (and then skipped again)
FENCED_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class AgentConfig:
    """Settings of one node's agent.

    ``domain_type``: ``test`` | ``qemu`` | ``kvm`` (see ``domain.ConversionContext``);
    ``images``: resolves containerDisk/kernelBoot images (None: image volumes fail with
    ``ErrImagePull``); ``pvc_root``: where claims' ``<namespace>/<claim>/disk.img`` live;
    ``workers``: VMIs reconciled concurrently; intervals in seconds;
    ``stand_in_migration_seconds``: how long a stand-in migration (test driver) "transfers";
    ``migration_address``: where migration data to this node goes (``targetNodeAddress``).
    """

    node_name: str
    state_dir: Path
    domain_type: str
    images: ImageResolver | None = None
    pvc_root: Path = DEFAULT_PVC_ROOT
    workers: int = 8
    resync_interval: float = 30.0
    shutdown_poll_interval: float = 1.0
    base_retry_delay: float = 1.0
    max_retry_delay: float = 30.0
    publish_domain_events: bool = True
    guest_refresh_interval: float = 30.0
    stand_in_migration_seconds: float = 1.0
    migration_address: str = "127.0.0.1"


def _rv(obj: dict[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _key_of(vmi: dict[str, Any]) -> str:
    meta = vmi.get("metadata") or {}
    return object_key(meta.get("namespace", ""), meta.get("name", ""))


class VmiAgent:
    """The sync loop of one node (see module docstring).

    ``store``: ``shared.store.ObjectStore``; ``hypervisor``: an opened ``Hypervisor``;
    ``bus``: ``shared.bus.Bus`` for lifecycle commands and domain events (None: neither);
    ``clock``: returns the current UTC datetime (tests pass a fake).
    """

    def __init__(self, store: Any, hypervisor: Any, config: AgentConfig, *, bus: Any = None,
                 clock: Callable[[], datetime] | None = None):
        self.store = store
        self.hv = hypervisor
        self.config = config
        self.bus = bus
        self.clock = clock or utc_now
        self.queue = WorkQueue(base_delay=config.base_retry_delay, max_delay=config.max_retry_delay,
                               name=f"virt-handler-vmi-{config.node_name}")
        self.informer: Informer[dict[str, Any]] = Informer(store, VMIS)
        self.informer.add_handler(self._on_vmi_change)
        self.vmis: dict[str, dict[str, Any]] = {}  # key -> latest VMI placed on this node
        self.state = SyncState()
        self.agent_connected = self.state.agent_connected  # domain name -> guest agent connected
        self.files = VmiFiles(config.state_dir, config.domain_type, config.images, pvc_root=config.pvc_root)
        self.recorder = EventRecorder(store, "virt-handler", host=config.node_name)
        self.executor = SyncExecutor(store, hypervisor, config, self.files, self.state, self.queue,
                                     lookup=self.vmis.get,
                                     observe=lambda vmi: self._observe(vmi, enqueue=False),
                                     record_event=self.record_event, clock=self.clock)
        self.migrations = MigrationExecutor(self.executor, release=self._release, enqueue=self.queue.add)
        self.executor.migrations = self.migrations
        self.freezes = FreezeKeeper(hypervisor, self.files, changed=self.queue.add, lookup=self.vmis.get)
        self.executor.freezes = self.freezes
        self.backups = BackupKeeper(hypervisor, clock=self.clock)
        self.commands = CommandServer(bus, hypervisor, config.node_name, lookup=self._lookup_struct,
                                      agent_connected=self.state.agent_connected, changed=self.queue.add,
                                      freezes=self.freezes, backups=self.backups)
        self.domain_events = DomainEventRelay(
            config.node_name, self.state, bus=bus, publish=config.publish_domain_events, enqueue=self.queue.add,
            enqueue_everything=self.enqueue_everything, clock=self.clock,
            uid_of=lambda key: ((self.vmis.get(key) or {}).get("metadata") or {}).get("uid", ""))
        self._tasks: list[asyncio.Task[None]] = []
        self._event_tasks: set[asyncio.Task[Any]] = set()
        self.synced = asyncio.Event()
        self.fenced = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the current state (VMIs and domains), then run the watch, the domain event
        listener, the workers, the resync timer and the command server as tasks."""
        subscription = self.hv.events()
        self._tasks = [self.informer.start()]
        await self.informer.wait_synced()
        await self.freezes.recover_all()  # a guest frozen before a restart is thawed at its deadline
        await self.enqueue_everything()
        self.synced.set()
        spawn = asyncio.get_running_loop().create_task
        self._tasks += [spawn(self.domain_events.run(subscription), name="handler-domain-events"),
                       spawn(self._resync(), name="handler-resync")]
        self._tasks += [spawn(self._worker(), name=f"handler-worker-{i}") for i in range(self.config.workers)]
        await self.commands.start()

    async def stop(self) -> None:
        """Stop all tasks; domains are left exactly as they are (a restart adopts them)."""
        await self.commands.stop()
        await self.backups.stop()
        await self.migrations.stop()
        await cancel_and_wait(self._tasks)
        await self.freezes.stop()  # after the workers: a last sync could re-arm a thaw timer
        self._tasks = []
        self.queue.shutdown()

    # -- inputs ------------------------------------------------------------------------------
    def _on_vmi_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Informer handler: keep ``vmis`` to the VMIs of this node and queue what changed."""
        if new is not None:
            self._observe(new)
        elif old is not None:
            self._forget(old)

    def _is_mine(self, vmi: dict[str, Any]) -> bool:
        """In this node's view: placed here, arriving here (``migrationState.targetNode``), or with
        files still here (a migration's former source or target; ``migration_decision.is_in_view``)."""
        status = vmi.get("status") or {}
        if status.get("nodeName") == self.config.node_name:
            return True
        ms = status.get("migrationState") or {}
        if ms.get("migrationUid") and ms.get("targetNode") == self.config.node_name:
            return True
        uid = (vmi.get("metadata") or {}).get("uid")
        return bool(uid) and self.files.vmi_dir(str(uid)).is_dir()

    def _release(self, key: str) -> None:
        """Drop ``key`` from the view when this node no longer has a part in it (its files are gone)."""
        cached = self.vmis.get(key)
        if cached is not None and not self._is_mine(cached):
            del self.vmis[key]
            self._left(key)

    def _observe(self, vmi: dict[str, Any], *, enqueue: bool = True) -> None:
        meta = vmi.get("metadata") or {}
        key = _key_of(vmi)
        cached = self.vmis.get(key)
        if cached is not None and _rv(cached) >= _rv(vmi) and \
                (cached.get("metadata") or {}).get("uid") == meta.get("uid"):
            return  # not newer than what this agent already has (e.g. the echo of its own write)
        if self._is_mine(vmi):
            self.vmis[key] = vmi
            if meta.get("uid"):
                self.files.last_seen[meta["uid"]] = vmi
            if enqueue:
                self.queue.add(key)
        elif cached is not None:
            del self.vmis[key]
            self._left(key)
            self.queue.add(key)

    def _forget(self, vmi: dict[str, Any]) -> None:
        key = _key_of(vmi)
        cached = self.vmis.get(key)
        if cached is not None and (cached.get("metadata") or {}).get("uid") == (vmi.get("metadata") or {}).get("uid"):
            del self.vmis[key]
            self._left(key)
            self.queue.add(key)
        elif self._is_mine(vmi):
            self.queue.add(key)

    def _left(self, key: str) -> None:
        """The VMI ``key`` left this node's view (moved away, or deleted): its migration series on
        this node go (``shared.handler_migration_metrics.forget_migration``)."""
        namespace, _, name = key.partition("/")
        migration_metrics.forget_migration((namespace, name, self.config.node_name))

    def _lookup_struct(self, key: str) -> VirtualMachineInstance | None:
        obj = self.vmis.get(key)
        return decode_vmi(obj) if obj is not None else None

    async def enqueue_everything(self) -> None:
        """Queue every VMI of this node and every domain this handler made."""
        for key in list(self.vmis):
            self.queue.add(key)
        try:
            for domain in await self.hv.list_domains():
                domain_key = compute_key_of_domain(domain.name)
                if domain_key and self.files.is_owned(domain):
                    self.queue.add(domain_key)
        except HypervisorError as err:
            log.warning("listing domains failed: %s", err)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            await self.enqueue_everything()

    # -- work --------------------------------------------------------------------------------
    async def reconcile(self, key: str) -> float | None:
        """Converge one VMI and its domain (``SyncExecutor.sync``): seconds after which to look
        again (None: only when something changes). Raises on failures to retry with backoff.
        Nothing is synced while fenced."""
        if self.fenced:
            return FENCED_RECHECK_SECONDS
        return await self.executor.sync(key)

    def _sync_span(self, key: str) -> contextlib.AbstractContextManager[Any]:
        """The span of one sync: under the VMI's own trace, except while a migration of it is in
        flight, when the migration's spans (prepare, transfer, take over, clean up; in the
        migration's trace) say what this handler does and a sync span per progress write would
        only pad the VMI's creation trace."""
        obj = self.vmis.get(key)
        if obj is not None and is_migration_in_flight(self._lookup_struct(key)):
            return contextlib.nullcontext()
        return tracing.object_span(SERVICE, "sync VirtualMachineInstance", obj)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return  # shut down
            delay = None
            try:
                with self._sync_span(key):
                    delay = await self.reconcile(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as err:  # noqa: BLE001 - any failure is retried with backoff
                retry = self.queue.add_rate_limited(key)
                log.warning("reconciling VMI %s failed (%s); retrying in %.1fs", key, err, retry)
            self.queue.done(key)
            if delay is not None:
                self.queue.add_after(key, delay)

    def record_event(self, vmi: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``vmi`` in the background (never delays the sync)."""
        obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", **vmi}
        task = asyncio.get_running_loop().create_task(self.recorder.record(obj, event_type, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)


def is_test_driver_uri(uri: str) -> bool:
    """True for a URI of libvirt's test driver, in-process (``test:///default``) or served by a
    libvirtd (``test+unix:///default?socket=...``; libvirt's URI scheme is ``driver[+transport]``)."""
    return uri.split(":", 1)[0].split("+", 1)[0] == "test"


def compute_domain_type(uri: str, kvm_usable: bool) -> str:
    """``test`` for libvirt's test driver, else ``kvm`` when KVM works, else ``qemu`` (TCG,
    KubeVirt's ``useEmulation``)."""
    if is_test_driver_uri(uri):
        return "test"
    return "kvm" if kvm_usable else "qemu"


def describe(agent: VmiAgent) -> dict[str, Any]:
    """A small snapshot for logs and health endpoints: VMIs cached, queue length."""
    return {"node": agent.config.node_name, "vmis": len(agent.vmis), "queued": len(agent.queue)}
