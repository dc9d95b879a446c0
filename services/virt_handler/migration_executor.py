"""Performs the migration actions of ``migration_decision`` on this node: the target's
preparation, the ownership compare-and-swap and clean-up; the source's start, outcome and
clean-up. The outgoing transfer itself is ``migration_runner.SourceTransfer`` (one task per VMI).

``MigrationExecutor.handle(key, obj, vmi, domain)`` is called by ``SyncExecutor.sync`` before the
normal sync: it returns ``(True, requeue_after)`` when the migration decided this sync, else
``(False, None)`` and the normal sync runs (with its migration guard). Every VMI write is a
compare-and-swap (``SyncExecutor.write_status``, or a whole-object update for the ownership
change, which also moves the ``kubevirt.io/nodeName`` label); on a conflict the VMI is read
again and the change recomputed, so no other writer's field is lost.

The target marks the per-VMI directory it prepared with ``migration-incoming`` until it owns the
VMI: only such a domain (never the guest of a VMI that moved here) is destroyed when the
migration fails.

Every migration write goes through :meth:`MigrationExecutor.write_migration_status` (or the
claim), which records the Events of the transition it made (``migration_events``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from services.virt_handler.migratability import compute_migration_method
from services.virt_handler import migration_status
from services.virt_handler.domain import DomainConversionError, domain_name
from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError
from services.virt_handler.migration_decision import (
    OWNER,
    SOURCE,
    CleanUpFormer,
    CleanUpTarget,
    ClaimOwnership,
    MigrationAction,
    MigrationFacts,
    NoMigrationWork,
    PrepareTarget,
    ResumeSourceMonitor,
    StartSource,
    WaitMigration,
    WriteSourceOutcome,
    compute_migration_action,
    compute_role,
    is_started_not_ended,
    migration_state_of,
)
from services.virt_handler.migration_events import compute_migration_events
from services.virt_handler.migration_plan import compute_progress
from services.virt_handler.migration_runner import Outcome, SourceTransfer, migration_span
from shared import handler_migration_metrics as migration_metrics
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import format_time
from shared.errors import Conflict, NotFound
from shared.images import ImageNotFound

log = logging.getLogger(__name__)

INCOMING_RECORD = "migration-incoming"
VMIS = "virtualmachineinstances"


class MigrationExecutor:
    """The migration half of one node's sync (see module docstring). ``sync``: the node's
    ``SyncExecutor`` (gateway, store, files, status writes); ``release(key)``: drop a VMI this node
    no longer has a part in from the agent's view; ``enqueue(key)``: sync the VMI again (when a
    transfer ends)."""

    def __init__(self, sync: Any, *, release: Any, enqueue: Any):
        self.sync = sync
        self.store = sync.store
        self.hv = sync.hv
        self.config = sync.config
        self.files = sync.files
        self.lookup = sync.lookup
        self.clock = sync.clock
        self.release = release
        self.enqueue = enqueue
        self.runners: dict[str, asyncio.Task[None]] = {}  # VMI uid -> its outgoing transfer

    @property
    def stand_in(self) -> bool:
        """Whether this node's migrations are stand-ins (libvirt's test driver cannot migrate)."""
        return bool(self.config.domain_type == "test")

    def incoming_marker(self, uid: str) -> Any:
        return self.files.vmi_dir(uid) / INCOMING_RECORD

    async def write_migration_status(self, key: str, obj: dict[str, Any],
                                     compute: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any] | None:
        """``SyncExecutor.write_status`` (compare-and-swap; returns the stored VMI, None when gone),
        then the migration Events of the change it wrote (the last VMI ``compute`` saw is what the
        write replaced; no write, no Events)."""
        bases: list[dict[str, Any]] = []

        def tracked(vmi: dict[str, Any]) -> dict[str, Any]:
            bases.append(vmi)
            return compute(vmi)

        stored = await self.sync.write_status(key, obj, tracked)
        if stored is not None and bases:
            self.record_transition(bases[-1], stored)
        return stored

    def record_transition(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Record (in the background) the Events of this node's write ``before`` -> ``after``."""
        for event in compute_migration_events(before, after, self.config.node_name):
            self.sync.record_event(after, event.type, event.reason, event.message)

    async def compute_facts(self, vmi: VirtualMachineInstance, domain: DomainInfo | None, role: str) -> MigrationFacts:
        """The node's facts (files, runner, and libvirt's job only where the decision needs it)."""
        uid = (vmi.metadata.uid if vmi.metadata is not None else None) or ""
        runner = self.runners.get(uid)
        runner_active = runner is not None and not runner.done()
        job_active = False
        if role == SOURCE and not runner_active and not self.stand_in and domain is not None and domain.is_active \
                and is_started_not_ended(migration_state_of(vmi)):
            job_active = await self.hv.has_outgoing_migration(domain.name)
        directory = self.files.vmi_dir(uid)
        return MigrationFacts(node_name=self.config.node_name, stand_in=self.stand_in, runner_active=runner_active,
                              job_active=job_active, files_exist=bool(uid) and directory.is_dir(),
                              incoming=bool(uid) and (directory / INCOMING_RECORD).exists())

    async def handle(self, key: str, obj: dict[str, Any], vmi: VirtualMachineInstance,
                     domain: DomainInfo | None) -> tuple[bool, float | None]:
        """Decide and perform this node's migration step for the VMI (see module docstring)."""
        uid = (vmi.metadata.uid if vmi.metadata is not None else None) or ""
        role = compute_role(vmi, self.config.node_name, files_exist=bool(uid) and self.files.vmi_dir(uid).is_dir())
        if role == OWNER:
            return False, None
        action = compute_migration_action(vmi, domain, await self.compute_facts(vmi, domain, role))
        if isinstance(action, NoMigrationWork):
            return False, None
        return True, await self.perform(key, obj, vmi, domain, action)

    async def perform(self, key: str, obj: dict[str, Any], vmi: VirtualMachineInstance, domain: DomainInfo | None,
                      action: MigrationAction) -> float | None:
        """Carry out ``action``; returns seconds after which to look again (None: on change)."""
        uid = (vmi.metadata.uid if vmi.metadata is not None else None) or ""
        ms = migration_state_of(vmi)
        migration_uid = (ms.migration_uid if ms is not None else None) or ""
        dname = domain_name(*key.split("/", 1))
        if isinstance(action, WaitMigration):
            return action.requeue_after
        if isinstance(action, PrepareTarget):
            with migration_span(obj, "prepare migration target"):
                return await self._prepare(key, obj, uid, migration_uid, dname, domain, action.define_paused)
        if isinstance(action, ClaimOwnership):
            with migration_span(obj, "take over VirtualMachineInstance"):
                return await self._claim(key, obj, vmi, uid, migration_uid, dname, domain, action.resume)
        if isinstance(action, CleanUpTarget):
            with migration_span(obj, "clean up migration target"):
                await self._remove(action.domain_name, destroy=True, uid=uid)
            return None
        if isinstance(action, CleanUpFormer):
            with migration_span(obj, "clean up migration source"):
                await self._remove(action.domain_name, destroy=action.destroy, uid=uid)
            self.release(key)
            return None
        if isinstance(action, StartSource):
            with migration_span(obj, "start migration on the source"):
                stored = await self.write_migration_status(key, obj, lambda v: migration_status.compute_source_started(
                    v, migration_uid, self.clock()))
            started = ((stored or {}).get("status") or {}).get("migrationState") or {}
            if started.get("migrationUid") == migration_uid and started.get("startTimestamp"):
                migration_metrics.observe_migration((*key.split("/", 1), self.config.node_name),
                                                start=self.clock().timestamp())
                self._spawn(key, uid, migration_uid, dname, "stand-in" if self.stand_in else "real")
            return None
        if isinstance(action, ResumeSourceMonitor):
            log.info("resuming the monitor of the migration of %s (libvirt job still running)", key)
            self._spawn(key, uid, migration_uid, dname, "resume")
            return None
        assert isinstance(action, WriteSourceOutcome)
        await self.write_outcome(key, migration_uid, Outcome(action.succeeded, action.reason, action.abort_status))
        return None

    def _spawn(self, key: str, uid: str, migration_uid: str, dname: str, mode: str) -> None:
        current = self.runners.get(uid)
        if current is not None and not current.done():
            return
        transfer = SourceTransfer(self, key, uid, migration_uid, dname, mode)
        task = asyncio.get_running_loop().create_task(transfer.run(), name=f"migration-{key}")
        self.runners[uid] = task
        task.add_done_callback(lambda t: self._finished(key, uid, t))

    def _finished(self, key: str, uid: str, task: asyncio.Task[None]) -> None:
        if self.runners.get(uid) is task:
            del self.runners[uid]
        if not task.cancelled() and task.exception() is not None:
            log.warning("migration of %s ended with an error: %s", key, task.exception())
        self.enqueue(key)

    async def stop(self) -> None:
        """Cancel every transfer task (libvirt's job, if any, goes on; a restarted handler follows it)."""
        from shared.tasks import cancel_and_wait
        tasks = list(self.runners.values())
        self.runners.clear()
        await cancel_and_wait(tasks)

    async def write_outcome(self, key: str, migration_uid: str, outcome: Outcome) -> None:
        """Write the source's view of the end of the migration (see ``compute_source_outcome``)."""
        obj = self.lookup(key)
        if obj is None:
            return
        log.info("migration of %s %s%s", key, "completed" if outcome.succeeded else "failed",
                 "" if outcome.succeeded else f": {outcome.reason}")
        await self.write_migration_status(key, obj, lambda v: migration_status.compute_source_outcome(
            v, migration_uid, succeeded=outcome.succeeded, reason=outcome.reason, abort_status=outcome.abort_status,
            now=self.clock(), progress=outcome.progress))
        migration_metrics.observe_migration((*key.split("/", 1), self.config.node_name), end=self.clock().timestamp())

    async def _prepare(self, key: str, obj: dict[str, Any], uid: str, migration_uid: str, dname: str,
                       domain: DomainInfo | None, define_paused: bool) -> float | None:
        ctx = self.files.context(uid)
        try:
            xml = await asyncio.to_thread(self.files.prepare, obj, ctx)
            await asyncio.to_thread(self.incoming_marker(uid).write_text, migration_uid)
            if define_paused and domain is None:
                self.sync.state.own_events[dname] = {"Defined", "Started", "Suspended"}
                await self.hv.define_and_start(xml, paused=True)
        except (DomainConversionError, ImageNotFound, HypervisorError, OSError) as err:
            self.sync.state.own_events.pop(dname, None)
            log.warning("cannot prepare the migration target of %s: %s", key, err)
            raise
        await self.write_migration_status(key, obj, lambda v: migration_status.compute_target_ready(
            v, migration_uid, self.config.migration_address))
        return None

    async def _claim(self, key: str, obj: dict[str, Any], vmi: VirtualMachineInstance, uid: str, migration_uid: str,
                     dname: str, domain: DomainInfo | None, resume: bool) -> float | None:
        if resume:
            await self.hv.resume(dname)
        final = await self._completed_stats(dname) if domain is not None and not self.stand_in else None
        progress = compute_progress(final, format_time(self.clock())) if final else None
        downtime = (progress or {}).get("downtimeMs")
        await asyncio.to_thread(self.incoming_marker(uid).unlink, True)
        method = compute_migration_method(vmi)
        current = obj
        for _ in range(5):
            new = migration_status.compute_claimed_vmi(current, migration_uid, self.config.node_name,
                                                       now=self.clock(), method=method, progress=progress)
            if new is None:
                return None
            try:
                stored = await self.store.update(VMIS, new, has_status_subresource=False)
            except Conflict:
                try:
                    current = await self.store.get(VMIS, (obj.get("metadata") or {}).get("namespace"),
                                                   obj["metadata"]["name"])
                except NotFound:
                    return None
                continue
            except NotFound:
                return None
            log.info("VMI %s now runs on this node (migration %s)", key, migration_uid)
            self.record_transition(current, stored)
            self.sync.state.agent_connected.pop(dname, None)  # adopt: ask the agent on this side
            self.sync.observe(stored)
            migration_metrics.observe_migration((*key.split("/", 1), self.config.node_name), downtime_ms=downtime)
            return 0.0
        raise Conflict(f"ownership of VMI {key} kept changing underneath the handler")

    async def _completed_stats(self, dname: str, attempts: int = 15) -> dict[str, Any] | None:
        """The destination's completed-job statistics of the migration that brought ``dname`` here
        (QEMU's ``downtime`` in ms, data processed...); libvirt records them as it finishes the
        incoming job, a moment after the guest resumed, so it is asked a few times (None when it
        never says)."""
        for _ in range(attempts):
            try:
                stats = await self.hv.completed_job_stats(dname)
            except HypervisorError:
                return None
            if stats and isinstance(stats.get("downtime"), int):
                return stats
            await asyncio.sleep(0.2)
        return None

    async def _remove(self, name: str | None, *, destroy: bool, uid: str) -> None:
        if name is not None:
            if destroy:
                await self.hv.destroy(name)
            await self.hv.undefine(name)
        if uid:
            await asyncio.to_thread(self.files.remove, uid)
