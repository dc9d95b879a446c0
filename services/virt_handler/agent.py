"""virt-handler's VMI sync loop: VMIs placed on this node become libvirt domains and back.

Owns, for one node: a cache of the VMIs whose ``status.nodeName`` is this node (list +
watch of the store), a work queue of ``<namespace>/<name>`` keys woken by VMI changes,
libvirt domain events and a periodic resync, and ``reconcile(key)``, which compares the
VMI with its domain and converges (KubeVirt's ``pkg/virt-handler/vm.go`` in spirit):

- VMI ``Scheduled`` here, no domain -> prepare disks, convert, define and start; write
  ``Running`` with conditions (one store write). Conversion failures become condition
  ``Synchronized=False`` (``ErrImagePull`` then ``ImagePullBackOff``, ...) and are retried
  with exponential backoff.
- VMI live, domain running/paused -> keep phase and ``Ready``/``Paused``/``AgentConnected``
  true to the domain (writes only on change).
- Domain stopped by the guest or crashed -> ``Succeeded``/``Failed`` by KubeVirt's rules
  (``status.py``), then undefine and remove the VMI's files.
- VMI being deleted (``deletionTimestamp``) or gone -> ACPI shutdown, wait
  ``spec.terminationGracePeriodSeconds``, destroy, write the final phase, undefine, clean.
- Domains whose VMI is gone or replaced (other uid) are removed; domains of live VMIs
  found after a restart are adopted as they are (never restarted). Only domains this
  handler made are touched (``is_owned``: their VMI directory is in its state dir), so
  handlers sharing one libvirt leave each other alone.
- VMI ``Running`` but its domain vanished -> ``Failed``.

Lifecycle commands (pause, unpause, soft reboot) arrive on
``shared.events.handler_command_subject(node)`` (request/reply). Each VMI's files live in
``<state_dir>/vmis/<uid>/`` together with ``vmi.json`` (the VMI as last started, so a
restarted handler can clean up after a VMI that disappeared meanwhile).
Node registration and heartbeat are ``node.py``; domain XML is ``domain/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from services.virt_handler import guest_agent
from services.virt_handler import status as vmi_status
from services.virt_handler.domain import (
    ConversionContext,
    DomainConversionError,
    ImageResolver,
    apply_disk_preparation,
    cleanup,
    compute_domain_xml,
    domain_name,
)
from services.virt_handler.acceleration import apply_acceleration_annotation
from services.virt_handler.hypervisor import DomainInfo, Hypervisor, HypervisorError, LifecycleEvent
from shared import events, tracing
from shared.errors import Conflict, Gone, NotFound
from shared.events_recorder import EventRecorder
from shared.images import ImageNotFound

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
DEFAULT_GRACE_SECONDS = 180  # KubeVirt's default terminationGracePeriodSeconds for VMIs
VMI_RECORD = "vmi.json"
SHUTDOWN_RECORD = "shutdown-started"


@dataclass(frozen=True)
class AgentConfig:
    """Settings of one node's agent.

    ``domain_type``: ``test`` | ``qemu`` | ``kvm`` (see ``domain.ConversionContext``);
    ``images``: resolves containerDisk/kernelBoot images (None: image volumes fail with
    ``ErrImagePull``); ``workers``: VMIs reconciled concurrently; intervals in seconds.
    """

    node_name: str
    state_dir: Path
    domain_type: str
    images: ImageResolver | None = None
    workers: int = 8
    resync_interval: float = 30.0
    shutdown_poll_interval: float = 1.0
    base_retry_delay: float = 1.0
    max_retry_delay: float = 30.0
    publish_domain_events: bool = True
    guest_refresh_interval: float = 30.0


#: service name of this process's spans
SERVICE = "virt-handler"


def compute_key(namespace: str, name: str) -> str:
    """Work-queue key of a VMI: ``<namespace>/<name>``."""
    return f"{namespace}/{name}"


def compute_key_of_domain(name: str) -> str | None:
    """The VMI key of a domain called ``<namespace>_<name>`` (None for other names; Kubernetes
    names never contain ``_``, so the first one separates)."""
    namespace, sep, rest = name.partition("_")
    return compute_key(namespace, rest) if sep and namespace and rest else None


def compute_grace_seconds(vmi: dict) -> int:
    """Seconds between the ACPI shutdown request and the forced destroy:
    ``spec.terminationGracePeriodSeconds`` (KubeVirt default 180)."""
    value = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if value is None else max(0, int(value))


def compute_retry_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff: ``base * 2**(failures-1)`` seconds, at most ``cap``."""
    return min(cap, base * 2 ** max(0, failures - 1))


def _rv(obj: dict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


async def apply_cancellation(tasks: list[asyncio.Task], *, rounds: int = 5, wait: float = 2.0) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again every ``wait`` seconds: on
    Python 3.11 a cancellation that meets an ``asyncio.wait_for`` timeout at the same moment can
    be lost (CPython gh-86296), which would leave ``stop()`` waiting forever on a watch task."""
    pending = [t for t in tasks if not t.done()]
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=wait)
        pending = list(still)
    for task in pending:
        log.warning("task %s did not stop after %d cancellations", task.get_name(), rounds)


class KeyQueue:
    """Work queue with client-go semantics: a key is queued at most once, never processed by
    two workers at once, and re-queued after ``done`` when it was added while processing."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (an earlier pending timer for it is replaced)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return self._queue.qsize()


class VmiAgent:
    """The sync loop of one node (see module docstring).

    ``store``: ``shared.store.ObjectStore``; ``hypervisor``: an opened ``Hypervisor``;
    ``bus``: ``shared.bus.Bus`` for lifecycle commands and domain events (None: neither);
    ``clock``: returns the current UTC datetime (tests pass a fake).
    """

    def __init__(self, store, hypervisor: Hypervisor, config: AgentConfig, *, bus=None,
                 clock: Callable[[], datetime] | None = None):
        self.store = store
        self.hv = hypervisor
        self.config = config
        self.bus = bus
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.queue = KeyQueue()
        self.vmis: dict[str, dict] = {}           # key -> latest VMI placed on this node
        self.last_seen: dict[str, dict] = {}      # uid -> last VMI object seen (for cleanup)
        self.agent_connected: dict[str, bool] = {}  # domain name -> guest agent connected
        self.failures: dict[str, int] = {}
        self.guest_status: dict[str, tuple[float, dict]] = {}  # key -> (monotonic time, status fields)
        self._tasks: list[asyncio.Task] = []
        self._command_sub = None
        self.recorder = EventRecorder(store, "virt-handler", host=config.node_name)
        self._event_tasks: set[asyncio.Task] = set()
        self.synced = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the current state (VMIs and domains), then run the watch, the domain event
        listener, the workers, the resync timer and the command server as tasks."""
        subscription = self.hv.events()
        items, list_rv = await self.store.list(VMIS)
        for vmi in items:
            self._observe(vmi)
        for domain in await self.hv.list_domains():
            key = compute_key_of_domain(domain.name)
            if key and self.is_owned(domain):
                self.queue.add(key)
        for key in list(self.vmis):
            self.queue.add(key)
        self.synced.set()
        spawn = asyncio.get_running_loop().create_task
        self._tasks = [spawn(self._watch_vmis(list_rv), name="handler-watch"),
                       spawn(self._listen_domains(subscription), name="handler-domain-events"),
                       spawn(self._resync(), name="handler-resync")]
        self._tasks += [spawn(self._worker(), name=f"handler-worker-{i}") for i in range(self.config.workers)]
        if self.bus is not None:
            self._command_sub = await self.bus.subscribe(events.handler_command_subject(self.config.node_name),
                                                         cb=self._on_command)

    async def stop(self) -> None:
        """Stop all tasks; domains are left exactly as they are (a restart adopts them)."""
        if self._command_sub is not None:
            try:
                await self._command_sub.unsubscribe()
            except Exception:  # connection already closed
                pass
            self._command_sub = None
        await apply_cancellation(self._tasks)
        self._tasks = []
        self.queue.close()

    # -- inputs ------------------------------------------------------------------------------
    def _is_mine(self, vmi: dict) -> bool:
        return (vmi.get("status") or {}).get("nodeName") == self.config.node_name

    def _observe(self, vmi: dict, *, enqueue: bool = True) -> None:
        meta = vmi.get("metadata") or {}
        key = compute_key(meta.get("namespace", ""), meta.get("name", ""))
        cached = self.vmis.get(key)
        if cached is not None and _rv(cached) >= _rv(vmi) and \
                (cached.get("metadata") or {}).get("uid") == meta.get("uid"):
            return  # not newer than what this agent already has (e.g. the echo of its own write)
        if self._is_mine(vmi):
            self.vmis[key] = vmi
            if meta.get("uid"):
                self.last_seen[meta["uid"]] = vmi
            if enqueue:
                self.queue.add(key)
        elif cached is not None:
            del self.vmis[key]
            self.queue.add(key)

    def _forget(self, vmi: dict) -> None:
        meta = vmi.get("metadata") or {}
        key = compute_key(meta.get("namespace", ""), meta.get("name", ""))
        cached = self.vmis.get(key)
        if cached is not None and (cached.get("metadata") or {}).get("uid") == meta.get("uid"):
            del self.vmis[key]
            self.queue.add(key)
        elif self._is_mine(vmi):
            self.queue.add(key)

    async def _watch_vmis(self, resource_version: str) -> None:
        while True:
            try:
                async for event in self.store.watch(VMIS, resource_version=resource_version):
                    resource_version = (event.object.get("metadata") or {}).get("resourceVersion") \
                        or resource_version
                    if event.type == "DELETED":
                        self._forget(event.object)
                    elif event.type in ("ADDED", "MODIFIED"):
                        self._observe(event.object)
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("VMI watch expired; listing again")
                items, resource_version = await self.store.list(VMIS)
                present = set()
                for vmi in items:
                    self._observe(vmi)
                    meta = vmi["metadata"]
                    present.add(compute_key(meta.get("namespace", ""), meta["name"]))
                for key in [k for k in self.vmis if k not in present]:
                    del self.vmis[key]
                    self.queue.add(key)
            except Exception as err:
                log.warning("VMI watch failed (%s); retrying", err)
                await asyncio.sleep(1.0)

    async def _listen_domains(self, subscription) -> None:
        async for event in subscription:
            if event.event == "Reconnected":
                await self._enqueue_everything()
                continue
            key = compute_key_of_domain(event.name)
            if event.event in ("AgentConnected", "AgentDisconnected"):
                self.agent_connected[event.name] = event.event == "AgentConnected"
                if key in self.guest_status:  # ask the (re)connected agent at once
                    self.guest_status[key] = (None, self.guest_status[key][1])
            if key is not None:
                self.queue.add(key)
                await self._publish_domain_event(key, event)

    async def _publish_domain_event(self, key: str, event: LifecycleEvent) -> None:
        if self.bus is None or not self.config.publish_domain_events:
            return
        namespace, name = key.split("/", 1)
        uid = ((self.vmis.get(key) or {}).get("metadata") or {}).get("uid", "")
        message = events.DomainEvent(node=self.config.node_name, namespace=namespace, name=name, uid=uid,
                                     event=event.event, detail=event.detail,
                                     timestamp=vmi_status.format_precise_timestamp(self.clock()))
        try:
            await self.bus.publish(events.domain_event_subject(self.config.node_name, namespace, name),
                                   events.encode(message))
        except Exception as err:  # notifications are best effort
            log.debug("publishing domain event failed: %s", err)

    async def _enqueue_everything(self) -> None:
        for key in list(self.vmis):
            self.queue.add(key)
        try:
            for domain in await self.hv.list_domains():
                key = compute_key_of_domain(domain.name)
                if key and self.is_owned(domain):
                    self.queue.add(key)
        except HypervisorError as err:
            log.warning("listing domains failed: %s", err)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            await self._enqueue_everything()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                with tracing.object_span(SERVICE, "sync VirtualMachineInstance", self.vmis.get(key)):
                    delay = await self.reconcile(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as err:
                failures = self.failures.get(key, 0) + 1
                self.failures[key] = failures
                delay = compute_retry_delay(failures, self.config.base_retry_delay, self.config.max_retry_delay)
                log.warning("reconciling VMI %s failed (%s); retrying in %.1fs", key, err, delay)
            self.queue.done(key)
            if delay is not None:
                self.queue.add_after(key, delay)

    # -- files -------------------------------------------------------------------------------
    def is_owned(self, domain: DomainInfo) -> bool:
        """Whether this handler made ``domain``: it carries a VMI uid whose directory exists in
        this handler's state dir (created before every define). Several handlers may share one
        libvirt (tests, an installation beside a test run); none touches another's domains."""
        return bool(domain.uid) and self.vmi_dir(domain.uid).is_dir()

    def vmi_dir(self, uid: str) -> Path:
        """Directory of one VMI's files (overlays, ISOs, console log, ``vmi.json``)."""
        return self.config.state_dir / "vmis" / uid

    def _context(self, uid: str) -> ConversionContext:
        return ConversionContext(domain_type=self.config.domain_type, vmi_dir=self.vmi_dir(uid),
                                 images=self.config.images)

    def _recorded_vmi(self, uid: str) -> dict | None:
        vmi = self.last_seen.get(uid)
        if vmi is not None:
            return vmi
        try:
            return json.loads((self.vmi_dir(uid) / VMI_RECORD).read_text())
        except (OSError, ValueError):
            return None

    def _apply_cleanup(self, uid: str) -> None:
        directory = self.vmi_dir(uid)
        vmi = self._recorded_vmi(uid)
        if vmi is not None:
            try:
                cleanup(vmi, self._context(uid))
            except Exception as err:  # cleanup must not block removal; leftovers are logged
                log.warning("cleanup of VMI %s files failed: %s", uid, err)
        shutil.rmtree(directory, ignore_errors=True)
        self.last_seen.pop(uid, None)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> float | None:
        """Converge one VMI and its domain. Returns seconds after which to look again (None:
        only when something changes). Raises on failures to retry with backoff."""
        namespace, name = key.split("/", 1)
        dom_name = domain_name(namespace, name)
        vmi = self.vmis.get(key)
        domain = await self.hv.get_domain(dom_name)
        if domain is not None and not self.is_owned(domain):
            return None  # not a KubeVirt domain, or another handler's on a shared libvirt: never touch it
        vmi_uid = ((vmi or {}).get("metadata") or {}).get("uid")

        if domain is not None and domain.uid != vmi_uid:
            # The VMI is gone or replaced by a newer one of the same name: this domain is stale.
            owner = self._recorded_vmi(domain.uid)
            if owner is not None and not (owner.get("metadata") or {}).get("deletionTimestamp"):
                owner = {**owner, "metadata": {**owner["metadata"], "deletionTimestamp": "gone"}}
            delay = await self._stop_domain(domain, owner or {})
            if delay is not None:
                return delay
            await self.hv.undefine(domain.name)
            await asyncio.to_thread(self._apply_cleanup, domain.uid)
            domain = None
            if vmi is None:
                return None

        if vmi is None:
            return None
        phase = (vmi.get("status") or {}).get("phase")
        if vmi_status.is_final_phase(phase):
            if domain is not None:
                await self.hv.destroy(domain.name)
                await self.hv.undefine(domain.name)
            if vmi_uid and self.vmi_dir(vmi_uid).exists():
                await asyncio.to_thread(self._apply_cleanup, vmi_uid)
            return None

        deleting = bool((vmi.get("metadata") or {}).get("deletionTimestamp"))
        if domain is None:
            if deleting:
                outcome = vmi_status.FAILED  # deleted before it ever ran, or its guest vanished
                await self._write_status(key, vmi, lambda v: vmi_status.compute_final_status(
                    v, outcome, now=self.clock()))
                if vmi_uid:
                    await asyncio.to_thread(self._apply_cleanup, vmi_uid)
                return None
            if phase == vmi_status.SCHEDULED:
                return await self._start(key, vmi)
            if phase in (vmi_status.RUNNING, "Unknown"):
                log.warning("domain of running VMI %s vanished; marking it Failed", key)
                await self._write_status(key, vmi, lambda v: vmi_status.compute_final_status(
                    v, vmi_status.FAILED, now=self.clock()))
                if vmi_uid:
                    await asyncio.to_thread(self._apply_cleanup, vmi_uid)
            return None

        if deleting and domain.is_active:
            return await self._stop_domain(domain, vmi)
        if not domain.is_active:
            await self._finish(key, vmi, domain)
            return None
        self.failures.pop(key, None)
        if domain.name not in self.agent_connected:  # adopted after a restart: ask the domain
            self.agent_connected[domain.name] = await self.hv.is_agent_connected(domain.name)
        connected = self.agent_connected.get(domain.name, False)
        delay = None
        if connected and domain.state != "Paused":
            fetched_at, _ = self.guest_status.get(key, (None, {}))
            if fetched_at is None or time.monotonic() - fetched_at >= self.config.guest_refresh_interval:
                self.guest_status[key] = (time.monotonic(), await guest_agent.fetch_guest_status(self.hv, domain.name))
            delay = self.config.guest_refresh_interval
        extra = self.guest_status.get(key, (None, {}))[1]
        await self._write_status(key, vmi, lambda v: vmi_status.compute_live_status(
            v, domain.state, domain.reason, now=self.clock(), agent_connected=connected, extra=extra))
        return delay

    async def _start(self, key: str, vmi: dict) -> float | None:
        uid = vmi["metadata"]["uid"]
        ctx = self._context(uid)
        paused = (vmi.get("spec") or {}).get("startStrategy") == "Paused"
        try:
            with tracing.child_span(SERVICE, "convert VirtualMachineInstance to domain"):
                xml = await asyncio.to_thread(self._prepare, vmi, ctx)
            info = await self.hv.define_and_start(xml, paused=paused)
        except (DomainConversionError, ImageNotFound, HypervisorError) as err:
            return await self._report_sync_failure(key, vmi, err)
        self.failures.pop(key, None)
        log.info("started domain %s for VMI %s", info.name, key)
        self._record_event(vmi, "Normal", "Created", "VirtualMachineInstance defined.")
        self.agent_connected[info.name] = False  # a fresh guest's agent connects later (event)
        await self._write_status(key, vmi, lambda v: vmi_status.compute_live_status(
            v, info.state, info.reason, now=self.clock()))
        await apply_acceleration_annotation(self.store, vmi, self.config.domain_type)
        return None

    def _prepare(self, vmi: dict, ctx: ConversionContext) -> str:
        ctx.vmi_dir.mkdir(parents=True, exist_ok=True)
        (ctx.vmi_dir / VMI_RECORD).write_text(json.dumps(vmi))
        apply_disk_preparation(vmi, ctx)
        return compute_domain_xml(vmi, ctx)

    async def _report_sync_failure(self, key: str, vmi: dict, err: Exception) -> float:
        failures = self.failures.get(key, 0) + 1
        self.failures[key] = failures
        if isinstance(err, ImageNotFound):
            reason, message = "ErrImagePull", err.message
        else:
            reason = getattr(err, "reason", None) or "SyncFailed"
            message = getattr(err, "message", None) or str(err)
        if reason == "ErrImagePull" and failures > 1:
            reason = "ImagePullBackOff"  # KubeVirt shows the back-off once a pull failed before
        delay = compute_retry_delay(failures, self.config.base_retry_delay, self.config.max_retry_delay)
        log.info("VMI %s cannot start (%s: %s); retrying in %.1fs", key, reason, message, delay)
        tracing.mark_failed(reason, message)
        self._record_event(vmi, "Warning", reason, message)  # a repeat only bumps the Event's count
        await self._write_status(key, vmi, lambda v: vmi_status.compute_sync_failure_status(
            v, reason, message, now=self.clock()))
        return delay

    async def _stop_domain(self, domain: DomainInfo, vmi: dict) -> float | None:
        """Drive a running domain towards stopped: ACPI first, destroy after the grace period.
        Returns the delay before the next look, or None once the domain is stopped."""
        if not domain.is_active:
            return None
        record = self.vmi_dir(domain.uid) / SHUTDOWN_RECORD
        grace = compute_grace_seconds(vmi) if vmi else 0
        try:
            started = float(record.read_text())
        except (OSError, ValueError):
            started = None
        now = time.time()
        if started is None:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(repr(now))
            started = now
            if grace > 0:
                log.info("shutting down domain %s (ACPI, grace %ss)", domain.name, grace)
                await self.hv.shutdown(domain.name)
                if vmi:
                    self._record_event(vmi, "Normal", "ShutdownCalled",
                                       f"ACPI shutdown sent to the guest (grace period {grace}s)")
        remaining = started + grace - now
        if remaining <= 0:
            log.info("grace period of %s over; destroying it", domain.name)
            await self.hv.destroy(domain.name)
            return None
        return min(remaining, self.config.shutdown_poll_interval)

    def _record_event(self, vmi: dict, event_type: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``vmi`` in the background (never delays the sync)."""
        obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", **vmi}
        task = asyncio.get_running_loop().create_task(self.recorder.record(obj, event_type, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _finish(self, key: str, vmi: dict, domain: DomainInfo) -> None:
        """The guest stopped: write Succeeded/Failed, then remove the domain and its files."""
        phase = vmi_status.compute_phase(domain.state, domain.reason,
                                         acpi_enabled=vmi_status.is_acpi_enabled(vmi))
        log.info("domain %s stopped (%s): VMI %s %s", domain.name, domain.reason, key, phase)
        await self._write_status(key, vmi, lambda v: vmi_status.compute_final_status(v, phase, now=self.clock()))
        await self.hv.undefine(domain.name)
        self.agent_connected.pop(domain.name, None)
        self.guest_status.pop(key, None)
        await asyncio.to_thread(self._apply_cleanup, domain.uid)

    async def _write_status(self, key: str, vmi: dict, compute: Callable[[dict], dict],
                            attempts: int = 5) -> dict | None:
        """Write ``compute(vmi)`` as the VMI's status when it changes it (compare-and-swap on the
        resourceVersion; on a conflict the VMI is read again and the status recomputed)."""
        for _ in range(attempts):
            new_status = compute(vmi)
            if not vmi_status.is_status_changed(vmi.get("status"), new_status):
                return vmi
            try:
                stored = await self.store.update(VMIS, {**vmi, "status": new_status}, subresource="status")
            except Conflict:
                meta = vmi["metadata"]
                try:
                    fresh = await self.store.get(VMIS, meta.get("namespace"), meta["name"])
                except NotFound:
                    return None
                if (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
                    return None
                vmi = fresh
                continue
            except NotFound:
                return None
            self._observe(stored, enqueue=False)  # the agent already acted on this state
            return stored
        raise Conflict(f"status of VMI {key} kept changing underneath the handler")

    # -- commands ----------------------------------------------------------------------------
    async def _on_command(self, msg) -> None:
        try:
            command = events.decode_command(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            result = events.CommandResult(code=400, reason="BadRequest", message=f"malformed command: {err}")
        else:
            result = await self.handle_command(command)
        try:
            await msg.respond(events.encode(result))
        except Exception as err:
            log.debug("answering a command failed: %s", err)

    async def handle_command(self, command: events.HandlerCommand) -> events.CommandResult:
        """Execute a lifecycle command for a VMI on this node and say how it went (see
        ``shared.events``): 404 when the VMI is not here, 409 when its state forbids it."""
        key = compute_key(command.namespace, command.name)
        vmi = self.vmis.get(key)
        if vmi is None or (command.uid and vmi["metadata"].get("uid") != command.uid):
            return events.CommandResult(code=404, reason="NotFound",
                                        message=f"VMI {key} is not running on node {self.config.node_name}")
        name = domain_name(command.namespace, command.name)
        domain = await self.hv.get_domain(name)
        if domain is None or not domain.is_active or (vmi.get("status") or {}).get("phase") != "Running":
            return events.CommandResult(code=409, reason="Conflict", message="VMI is not running")
        try:
            if isinstance(command, events.Pause):
                await self.hv.pause(name)
            elif isinstance(command, events.Unpause):
                await self.hv.resume(name)
            elif isinstance(command, events.SoftReboot):
                if domain.state == "Paused":
                    return events.CommandResult(code=409, reason="Conflict", message="VMI is paused")
                await self.hv.reboot(name)
            elif isinstance(command, events.GuestOSInfo):
                if not self.agent_connected.get(name, False):
                    return events.CommandResult(code=409, reason="Conflict",
                                                message="VMI does not have guest agent connected")
                return events.CommandResult(body=await guest_agent.fetch_guest_agent_info(self.hv, name))
        except HypervisorError as err:
            code = 409 if err.reason == "OperationInvalid" else 500
            return events.CommandResult(code=code, reason="Conflict" if code == 409 else "InternalError",
                                        message=err.message)
        self.queue.add(key)
        return events.CommandResult()


def compute_domain_type(uri: str, kvm_usable: bool) -> str:
    """``test`` for libvirt's test driver, else ``kvm`` when KVM works, else ``qemu`` (TCG,
    KubeVirt's ``useEmulation``)."""
    if uri.startswith("test:"):
        return "test"
    return "kvm" if kvm_usable else "qemu"


def describe(agent: VmiAgent) -> dict[str, Any]:
    """A small snapshot for logs and health endpoints: VMIs cached, queue length."""
    return {"node": agent.config.node_name, "vmis": len(agent.vmis), "queued": len(agent.queue)}
