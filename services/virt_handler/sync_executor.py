"""Performs the actions of ``sync_decision`` for one VMI: libvirt through the ``Hypervisor``
gateway, status through the store, Events through the recorder, files through ``VmiFiles``.

``SyncExecutor.sync(key)`` gathers the facts (the cached VMI, its domain, the node's records),
asks ``compute_sync_action`` what to do and does it. Status writes are compare-and-swap on the
resourceVersion: on a conflict the VMI is read again and the status recomputed (a status that
would not change is not written). Conversion failures become ``Synchronized=False`` with
``ErrImagePull`` (then ``ImagePullBackOff``), ``FailedPvcNotFound``, ``SyncFailed``..., and the
next try comes after an exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from services.virt_handler.migratability import compute_live_migratable_condition, compute_migration_method
from services.virt_handler import guest_agent
from services.virt_handler import status as vmi_status
from services.virt_handler.acceleration import compute_annotated_metadata
from services.virt_handler.domain import DomainConversionError, domain_name
from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError
from services.virt_handler.sync_decision import (
    AdoptDomain,
    CleanUpFinal,
    FinishDomain,
    MarkFailed,
    NodeFacts,
    Nothing,
    RemoveStaleDomain,
    StartDomain,
    StopDomain,
    StopStep,
    SyncAction,
    WriteLiveStatus,
    compute_sync_action,
)
from services.virt_handler.vmi_files import VmiFiles
from shared import tracing
from shared.api.decoding import decode_object
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import EventType, Phase, Reason, is_final_phase
from shared.errors import Conflict, NotFound
from shared.images import ImageNotFound

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
SERVICE = "virt-handler"


def decode_vmi(obj: dict[str, Any]) -> VirtualMachineInstance:
    """A stored VMI dict as the ``shared.api`` Struct (stored objects passed admission, so the
    direct conversion nearly always fits; else nulls and numeric quantities are cleaned first).
    Raises ``shared.api.decoding.FieldErrors`` when it does not fit."""
    try:
        return msgspec.convert(obj, VirtualMachineInstance)
    except msgspec.ValidationError:
        decoded: VirtualMachineInstance = decode_object(obj, VirtualMachineInstance).struct
        return decoded


def compute_migratability_status(vmi: VirtualMachineInstance) -> tuple[dict[str, Any], str]:
    """The ``LiveMigratable`` condition (type, status, reason, message) and ``migrationMethod`` of
    ``vmi`` (:mod:`services.virt_handler.migratability`)."""
    condition = compute_live_migratable_condition(vmi)
    fields = {"type": condition.type, "status": condition.status}
    for name in ("reason", "message"):
        if getattr(condition, name, None):
            fields[name] = getattr(condition, name)
    return fields, compute_migration_method(vmi)


def migratability_with_time(migratable: tuple[dict[str, Any], str] | None,
                            now: datetime) -> tuple[dict[str, Any], str] | None:
    """``migratable`` with the condition's ``lastProbeTime`` (null) and ``lastTransitionTime``."""
    if migratable is None:
        return None
    from shared.api.vocabulary import format_time
    return {**migratable[0], "lastProbeTime": None, "lastTransitionTime": format_time(now)}, migratable[1]


class RetryQueue(Protocol):
    """The part of ``shared.workqueue.WorkQueue`` the executor uses for its backoff."""

    def add_rate_limited(self, key: str) -> float: ...

    def num_requeues(self, key: str) -> int: ...

    def forget(self, key: str) -> None: ...


@dataclass
class SyncState:
    """What the handler remembers between syncs (in memory; a restart starts empty and adopts):
    ``agent_connected`` domain name -> guest agent connected; ``guest_status`` key ->
    (monotonic time of the fetch or None to fetch at once, status fields from the agent);
    ``own_events`` domain name -> the lifecycle events (``Defined``, ``Started``, ``Suspended``)
    this handler's own start of the domain causes: the sync that started it already read the
    domain after them, so they wake no second sync (cleared when the key is synced again).
    Consecutive failures of a key are counted by the work queue (``num_requeues``)."""

    agent_connected: dict[str, bool] = field(default_factory=dict)
    guest_status: dict[str, tuple[float | None, dict[str, Any]]] = field(default_factory=dict)
    own_events: dict[str, set[str]] = field(default_factory=dict)

    def is_own_event(self, domain: str, event: str) -> bool:
        """Whether ``event`` of ``domain`` is one its own start caused (consumed: True once)."""
        expected = self.own_events.get(domain)
        if expected is None or event not in expected:
            return False
        expected.discard(event)
        if not expected:
            del self.own_events[domain]
        return True


class SyncExecutor:
    """Syncs one VMI at a time (see module docstring).

    ``queue``: the work queue, whose per-key backoff times the retries; ``lookup(key)``: the
    cached VMI dict placed on this node (None: gone); ``observe(stored)``:
    hands a VMI this executor wrote back to the cache; ``record_event(vmi, type, reason,
    message)``: records a Kubernetes Event in the background; ``clock``: current UTC datetime.
    """

    def __init__(self, store: Any, hypervisor: Any, config: Any, files: VmiFiles, state: SyncState,
                 queue: RetryQueue, *,
                 lookup: Callable[[str], dict[str, Any] | None], observe: Callable[[dict[str, Any]], None],
                 record_event: Callable[[dict[str, Any], str, str, str], None], clock: Callable[[], datetime]):
        self.store = store
        self.hv = hypervisor
        self.config = config
        self.files = files
        self.state = state
        self.queue = queue
        self.lookup = lookup
        self.observe = observe
        self.record_event = record_event
        self.clock = clock
        self.migrations: Any = None  # MigrationExecutor, attached by the agent (None: no migration roles)
        self.freezes: Any = None  # freeze.FreezeKeeper, attached by the agent (None: no freeze deadlines)

    # -- facts and decision ------------------------------------------------------------------
    def compute_facts(self, key: str, vmi: VirtualMachineInstance | None, domain: DomainInfo | None) -> NodeFacts:
        """The node's facts about ``vmi`` and ``domain`` (reads the VMI's directory)."""
        base = NodeFacts(node_name=self.config.node_name, now=time.time(),
                         guest_refresh_interval=self.config.guest_refresh_interval,
                         shutdown_poll_interval=self.config.shutdown_poll_interval)
        if domain is not None and not self.files.is_owned(domain):
            return NodeFacts(node_name=base.node_name, domain_owned=False)
        uid = vmi.metadata.uid if vmi is not None and vmi.metadata is not None else None
        stale_owner = None
        shutdown_started = None
        if domain is not None and domain.uid:
            if domain.uid != uid:
                recorded = self.files.recorded_vmi(domain.uid)
                stale_owner = decode_vmi(recorded) if recorded is not None else None
            deleting = vmi is not None and vmi.metadata is not None and bool(vmi.metadata.deletion_timestamp)
            if domain.is_active and (domain.uid != uid or deleting):
                shutdown_started = self.files.read_shutdown_started(domain.uid)
        fetched_at = self.state.guest_status.get(key, (None, {}))[0]
        final = vmi is not None and vmi.status is not None and is_final_phase(vmi.status.phase)
        return NodeFacts(
            node_name=base.node_name, now=base.now, shutdown_started=shutdown_started, stale_owner=stale_owner,
            agent_connected=self.state.agent_connected.get(domain.name) if domain is not None else None,
            guest_info_age=None if fetched_at is None else time.monotonic() - fetched_at,
            vmi_files_exist=bool(uid) and final and self.files.vmi_dir(uid or "").exists(),
            guest_refresh_interval=base.guest_refresh_interval, shutdown_poll_interval=base.shutdown_poll_interval)

    async def sync(self, key: str) -> float | None:
        """Converge one VMI and its domain. Returns seconds after which to look again (None:
        only when something changes). Raises on failures to retry with backoff."""
        namespace, name = key.split("/", 1)
        obj = self.lookup(key)
        vmi = decode_vmi(obj) if obj is not None else None
        dname = domain_name(namespace, name)
        self.state.own_events.pop(dname, None)  # this sync reads the domain as it is now
        domain = await self.hv.get_domain(dname)
        if vmi is not None and obj is not None and self.migrations is not None:
            handled, delay = await self.migrations.handle(key, obj, vmi, domain)
            if handled:
                return delay
        action = compute_sync_action(vmi, domain, self.compute_facts(key, vmi, domain))
        return await self.perform(key, obj, vmi, domain, action)

    # -- execution ---------------------------------------------------------------------------
    async def perform(self, key: str, obj: dict[str, Any] | None, vmi: VirtualMachineInstance | None,
                      domain: DomainInfo | None, action: SyncAction) -> float | None:
        """Carry out ``action`` for the VMI ``obj`` (its Struct ``vmi``) and ``domain``."""
        if isinstance(action, Nothing):
            return action.requeue_after
        if isinstance(action, RemoveStaleDomain):
            if action.step is not None:
                await self._stop(action.domain_name, action.uid, action.step, self.files.recorded_vmi(action.uid))
                if action.step.requeue_after is not None:
                    return action.step.requeue_after
            await self.hv.undefine(action.domain_name)
            await asyncio.to_thread(self.files.remove, action.uid)
            return await self.perform(key, obj, vmi, None, action.then)
        assert obj is not None, f"{type(action).__name__} needs a VMI"
        if isinstance(action, CleanUpFinal):
            if action.domain_name is not None:
                await self.hv.destroy(action.domain_name)
                await self.hv.undefine(action.domain_name)
            if action.uid is not None:
                await asyncio.to_thread(self.files.remove, action.uid)
            return None
        if isinstance(action, MarkFailed):
            if action.vanished:
                log.warning("domain of running VMI %s vanished; marking it Failed", key)
            await self.write_status(key, obj, lambda v: vmi_status.compute_final_status(
                v, Phase.FAILED, now=self.clock()))
            if action.uid:
                await asyncio.to_thread(self.files.remove, action.uid)
            return None
        if isinstance(action, StartDomain):
            return await self._start(key, obj, action.paused, vmi)
        if isinstance(action, StopDomain):
            await self._stop(action.domain_name, action.uid, action.step, obj)
            return action.step.requeue_after
        if isinstance(action, FinishDomain):
            await self._finish(key, obj, action)
            return None
        self.queue.forget(key)
        if isinstance(action, AdoptDomain):  # adopted after a restart: ask the domain, then decide again
            self.state.agent_connected[action.domain_name] = await self.hv.is_agent_connected(action.domain_name)
            again = compute_sync_action(vmi, domain, self.compute_facts(key, vmi, domain))
            return await self.perform(key, obj, vmi, domain, again)
        return await self._write_live(key, obj, action, vmi)

    async def _write_live(self, key: str, obj: dict[str, Any], action: WriteLiveStatus,
                          vmi: VirtualMachineInstance | None = None) -> float | None:
        name = domain_name(*key.split("/", 1))
        if action.fetch_guest_info:
            self.state.guest_status[key] = (time.monotonic(), await guest_agent.fetch_guest_status(self.hv, name))
        extra = self.state.guest_status.get(key, (None, {}))[1]
        migratable = compute_migratability_status(vmi) if vmi is not None else None
        frozen = await self._freeze_status(key, name, obj)
        await self.write_status(key, obj, lambda v: vmi_status.compute_live_status(
            v, action.state, action.reason, now=self.clock(), agent_connected=action.agent_connected, extra=extra,
            migratability=migratability_with_time(migratable, self.clock()), fs_freeze_status=frozen))
        return action.requeue_after

    async def _freeze_status(self, key: str, name: str, obj: dict[str, Any]) -> str | None:
        """The VMI's ``fsFreezeStatus``, after acting on its recorded unfreeze deadline (thaw when
        past, else keep the timer armed: ``freeze.FreezeKeeper.reconcile``)."""
        uid = (obj.get("metadata") or {}).get("uid")
        if self.freezes is None or not uid:
            return None
        frozen: str | None = await self.freezes.reconcile(key, name, uid, True)
        return frozen

    async def _start(self, key: str, obj: dict[str, Any], paused: bool,
                     vmi: VirtualMachineInstance | None = None) -> float | None:
        uid = obj["metadata"]["uid"]
        ctx = self.files.context(uid)
        dname = domain_name(*key.split("/", 1))
        try:
            with tracing.child_span(SERVICE, "convert VirtualMachineInstance to domain"):
                xml = await asyncio.to_thread(self.files.prepare, obj, ctx)
            self.state.own_events[dname] = {"Defined", "Started", "Suspended"} if paused else {"Defined", "Started"}
            info = await self.hv.define_and_start(xml, paused=paused)
        except (DomainConversionError, ImageNotFound, HypervisorError) as err:
            self.state.own_events.pop(dname, None)
            await self._report_sync_failure(key, obj, err)
            return None  # the queue's backoff brings the key back
        self.queue.forget(key)
        log.info("started domain %s for VMI %s", info.name, key)
        self.record_event(obj, EventType.NORMAL, "Created", "VirtualMachineInstance defined.")
        self.state.agent_connected[info.name] = False  # a fresh guest's agent connects later (event)
        migratable = compute_migratability_status(vmi or decode_vmi(obj))  # in the first Running write: no extra write
        await self.write_status(key, obj, lambda v: vmi_status.compute_live_status(
            v, info.state, info.reason, now=self.clock(),
            migratability=migratability_with_time(migratable, self.clock())), annotate=True)
        return None

    async def _report_sync_failure(self, key: str, obj: dict[str, Any], err: Exception) -> None:
        """Condition ``Synchronized=False``, a Warning Event, and a retry after the key's backoff."""
        failures = self.queue.num_requeues(key) + 1
        if isinstance(err, ImageNotFound):
            reason, message = str(Reason.ERR_IMAGE_PULL), err.message
        else:
            reason = getattr(err, "reason", None) or Reason.SYNC_FAILED
            message = getattr(err, "message", None) or str(err)
        if reason == Reason.ERR_IMAGE_PULL and failures > 1:
            reason = Reason.IMAGE_PULL_BACK_OFF  # KubeVirt shows the back-off once a pull failed before
        delay = self.queue.add_rate_limited(key)
        log.info("VMI %s cannot start (%s: %s); retrying in %.1fs", key, reason, message, delay)
        tracing.mark_failed(reason, message)
        self.record_event(obj, EventType.WARNING, reason, message)  # a repeat only bumps the Event's count
        await self.write_status(key, obj, lambda v: vmi_status.compute_sync_failure_status(
            v, reason, message, now=self.clock()))

    async def _stop(self, name: str, uid: str, step: StopStep, about: dict[str, Any] | None) -> None:
        """One ``StopStep``: record the start, ACPI shutdown (with an Event), destroy."""
        if step.record_start is not None:
            self.files.write_shutdown_started(uid, step.record_start)
        if step.send_acpi:
            log.info("shutting down domain %s (ACPI, grace %ss)", name, step.grace_seconds)
            await self.hv.shutdown(name)
            if step.announce and about is not None:
                self.record_event(about, EventType.NORMAL, "ShutdownCalled",
                                  f"ACPI shutdown sent to the guest (grace period {step.grace_seconds}s)")
        if step.destroy:
            log.info("grace period of %s over; destroying it", name)
            await self.hv.destroy(name)

    async def _finish(self, key: str, obj: dict[str, Any], action: FinishDomain) -> None:
        log.info("domain %s stopped: VMI %s %s", action.domain_name, key, action.phase)
        await self.write_status(key, obj, lambda v: vmi_status.compute_final_status(v, action.phase, now=self.clock()))
        await self.hv.undefine(action.domain_name)
        self.state.agent_connected.pop(action.domain_name, None)
        self.state.guest_status.pop(key, None)
        await asyncio.to_thread(self.files.remove, action.uid)

    async def write_status(self, key: str, obj: dict[str, Any], compute: Callable[[dict[str, Any]], dict[str, Any]],
                           attempts: int = 5, *, annotate: bool = False) -> dict[str, Any] | None:
        """Write ``compute(vmi)`` as the VMI's status when it changes it (compare-and-swap on the
        resourceVersion; on a conflict the VMI is read again and the status recomputed).
        ``annotate``: the same write also sets the acceleration annotation (``acceleration``)
        when it is missing, as a whole-object update that sends the spec back as read.
        Returns the stored VMI (None: it is gone or replaced). Raises ``Conflict`` after
        ``attempts`` lost races."""
        vmi = obj
        for _ in range(attempts):
            new_status = compute(vmi)
            meta = vmi["metadata"]
            new_meta = compute_annotated_metadata(meta, self.config.domain_type) if annotate else None
            if new_meta is None and not vmi_status.is_status_changed(vmi.get("status"), new_status):
                return vmi
            try:
                stored: dict[str, Any]
                if new_meta is None:
                    stored = await self.store.update(VMIS, {**vmi, "status": new_status}, subresource="status")
                else:
                    stored = await self.store.update(VMIS, {**vmi, "metadata": new_meta, "status": new_status},
                                                     has_status_subresource=False)
            except Conflict:
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
            self.observe(stored)  # the agent already acted on this state
            return stored
        raise Conflict(f"status of VMI {key} kept changing underneath the handler")
