"""The source side of one live migration while it runs: the transfer and its monitor.

``SourceTransfer.run()`` is one asyncio task per migrating VMI on the source node, in one of
three modes:

- ``real``: builds the ``migrateToURI3`` call (``migration_plan``: the target Node's annotations
  ``kubevirt-py.io/libvirt-migration-uri`` and ``kubevirt-py.io/vmi-state-dir``, the migratable
  XML with the per-VMI directory rewritten, block migration of the writable local disks, the
  options of ``migrationState.migrationConfiguration``) and runs it on a thread;
- ``resume``: a restarted handler follows libvirt's migration job that outlived it;
- ``stand-in``: the STAND-IN MIGRATION of the test driver (which cannot migrate): no data moves;
  it reports synthetic progress for ``stand_in_seconds``, then destroys and undefines the
  source domain (the target resumes its paused copy when it sees ``completed``); an abort writes
  ``abortStatus: Aborting`` (as a real transfer does) and ends it at once.

While it runs it samples the job statistics every ``SAMPLE_SECONDS`` (progress into
``migrationState.progress`` at most once per ``WRITE_SECONDS``; the migration gauges of
``shared.metrics``), applies ``maxDowntimeMs`` (capped at QEMU's 300 ms default, as KubeVirt:
``migration_plan.compute_initial_max_downtime``) once the job exists, the timeouts of
``migration_plan.compute_timeout_step`` and an ``abortRequested`` (``abortJob``; ``abortStatus``
``Aborting``, then ``Succeeded`` when the guest stayed, ``Failed`` when the migration completed
anyway). Its outcome is written by ``MigrationExecutor.write_outcome``; every write goes
through ``MigrationExecutor.write_migration_status``, which records the migration Events. Everything runs under
the migration's trace (the VMI annotation ``kubevirt-py.io/migration-traceparent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.virt_handler import migration_plan as plan
from services.virt_handler import migration_status
from services.virt_handler.hypervisor_types import HypervisorError
from shared.api.migration_vocabulary import MIGRATION_TRACEPARENT_ANNOTATION
from shared import handler_migration_metrics as migration_metrics
from shared import tracing
from shared.api.migration_vocabulary import (
    NODE_MIGRATION_URI_ANNOTATION,
    NODE_VMI_STATE_DIR_ANNOTATION,
    MigrationAbortStatus,
    MigrationMode,
)
from shared.api.quantity import to_bytes
from shared.api.vocabulary import format_time
from shared.errors import NotFound

log = logging.getLogger(__name__)

"""On a VMI (written by virt-migration at hand-off): the migration's W3C traceparent."""
SAMPLE_SECONDS = 0.5
WRITE_SECONDS = 1.0
ABORTED = "Live migration aborted"
DEFAULT_MEMORY = 256 * 2**20


@dataclass(frozen=True)
class Outcome:
    """How a transfer ended: ``succeeded``; else ``reason``; ``abort_status`` when an abort was
    requested; ``progress`` fields to merge (``downtimeMs``)."""

    succeeded: bool
    reason: str | None = None
    abort_status: str | None = None
    progress: dict[str, Any] | None = None


@contextlib.contextmanager
def migration_span(vmi: dict[str, Any] | None, name: str) -> Iterator[Any]:
    """A span ``name`` in the migration's trace (VMI annotation ``kubevirt-py.io/migration-traceparent``,
    else the VMI's own trace annotations); none when tracing is off or the VMI carries no trace."""
    annotations = ((vmi or {}).get("metadata") or {}).get("annotations") or {}
    parent = tracing.extract_context({"traceparent": annotations[MIGRATION_TRACEPARENT_ANNOTATION]}) \
        if tracing.is_enabled() and annotations.get(MIGRATION_TRACEPARENT_ANNOTATION) else None
    if parent is None:
        with tracing.object_span("virt-handler", name, vmi, once_per_version=False) as span:
            yield span
        return
    with tracing.get_tracer("virt-handler").start_as_current_span(name, context=parent) as span:
        yield span


def compute_memory_bytes(vmi: dict[str, Any]) -> int:
    """Guest memory of ``vmi`` in bytes (``spec.domain.memory.guest``, else the memory request),
    for the stand-in's synthetic totals."""
    domain = (vmi.get("spec") or {}).get("domain") or {}
    value = ((domain.get("memory") or {}).get("guest")
             or ((domain.get("resources") or {}).get("requests") or {}).get("memory"))
    try:
        return to_bytes(value) if value is not None else DEFAULT_MEMORY
    except (ValueError, TypeError, ArithmeticError):
        return DEFAULT_MEMORY


class SourceTransfer:
    """One outgoing migration (see module docstring). ``executor``: the ``MigrationExecutor``
    (gateway, store writes, the cached VMI); ``key``/``uid``: the VMI; ``migration_uid``: the
    migration's; ``mode``: ``real`` | ``resume`` | ``stand-in``."""

    def __init__(self, executor: Any, key: str, uid: str, migration_uid: str, domain_name: str, mode: str):
        self.ex = executor
        self.key = key
        self.uid = uid
        self.migration_uid = migration_uid
        self.domain_name = domain_name
        self.mode = mode
        namespace, name = key.split("/", 1)
        self.labels = (namespace, name, executor.config.node_name)
        self._last_write = 0.0
        self._reason: str | None = None
        self._aborting = False
        self._progress: dict[str, Any] | None = None  # the last published sample

    # -- the cached VMI --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        vmi = self.ex.lookup(self.key) or {}
        ms = (vmi.get("status") or {}).get("migrationState") or {}
        return ms if ms.get("migrationUid") == self.migration_uid else {}

    def _abort_requested(self) -> bool:
        return bool(self._state().get("abortRequested"))

    async def _write(self, compute: Any) -> None:
        obj = self.ex.lookup(self.key)
        if obj is not None:
            await self.ex.write_migration_status(self.key, obj, compute)

    async def _sample(self, stats: dict[str, Any], *, force: bool = False) -> None:
        progress = plan.compute_progress(stats, format_time(self.ex.clock()))
        if not plan.is_progress_sample(self._progress, progress, aborting=self._aborting or self._reason is not None):
            return
        self._progress = progress
        migration_metrics.observe_migration(self.labels, progress)
        now = time.monotonic()
        if force or now - self._last_write >= WRITE_SECONDS:
            self._last_write = now
            await self._write(lambda v: migration_status.compute_progress_status(v, self.migration_uid, progress))

    # -- the task ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the transfer to its end and write the outcome (cancelled: nothing written, as after
        a crash; the next handler decides from libvirt's state)."""
        with migration_span(self.ex.lookup(self.key), f"migrate VirtualMachineInstance ({self.mode} source)"):
            try:
                if self.mode == "stand-in":
                    outcome = await self._stand_in()
                elif self.mode == "resume":
                    outcome = await self._follow(None, plan.compute_migration_options(
                        self._state().get("migrationConfiguration")))
                else:
                    outcome = await self._transfer()
            except HypervisorError as err:
                outcome = Outcome(False, f"Live migration failed: {err.message}",
                                  MigrationAbortStatus.SUCCEEDED if self._abort_requested() else None)
            if not outcome.succeeded:
                tracing.mark_failed("MigrationFailed", outcome.reason or "")
                if self._progress is not None:  # the last good sample, over whatever was written since
                    outcome = dataclasses.replace(outcome, progress={**self._progress, **(outcome.progress or {})})
            migration_metrics.observe_migration(
                self.labels, migration_metrics.compute_migration_end_values(self._progress, outcome.succeeded))
            await self.ex.write_outcome(self.key, self.migration_uid, outcome)

    async def _stand_in(self) -> Outcome:
        """STAND-IN MIGRATION (test driver): synthetic progress for the configured delay."""
        duration = float(self.ex.config.stand_in_migration_seconds)
        total = compute_memory_bytes(self.ex.lookup(self.key) or {})
        started = time.monotonic()
        while True:
            if self._abort_requested():  # cancelled at once; Aborting first, as a real transfer reports it
                self._aborting = True
                await self._write(lambda v: migration_status.compute_abort_status(
                    v, self.migration_uid, MigrationAbortStatus.ABORTING))
                return Outcome(False, ABORTED, MigrationAbortStatus.SUCCEEDED)
            elapsed = time.monotonic() - started
            await self._sample(plan.compute_stand_in_stats(elapsed, duration, total), force=elapsed >= duration)
            if elapsed >= duration:
                break
            await asyncio.sleep(min(0.05, max(0.0, duration - elapsed)))
        await self.ex.hv.destroy(self.domain_name)
        await self.ex.hv.undefine(self.domain_name)
        return Outcome(True)  # no downtime is reported: nothing was measured

    async def _transfer(self) -> Outcome:
        ms = self._state()
        if not ms:
            return Outcome(False, "the migration was replaced before it started")
        try:
            node = await self.ex.store.get("nodes", None, ms.get("targetNode"))
        except NotFound:
            return Outcome(False, f"target node {ms.get('targetNode')} does not exist")
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        dest_uri, state_dir = annotations.get(NODE_MIGRATION_URI_ANNOTATION), annotations.get(
            NODE_VMI_STATE_DIR_ANNOTATION)
        if not dest_uri or not state_dir:
            return Outcome(False, f"target node {ms.get('targetNode')} does not announce its migration URI and "
                                  "state directory")
        options = plan.compute_migration_options(ms.get("migrationConfiguration"))
        xml = await self.ex.hv.migratable_xml(self.domain_name)
        dest_xml = plan.compute_destination_xml(xml, str(self.ex.files.vmi_dir(self.uid)), f"{state_dir}/{self.uid}")
        request = plan.compute_migration_request(options, dest_uri, ms.get("targetNodeAddress") or "127.0.0.1",
                                                 dest_xml, plan.compute_migrated_disks(xml))
        log.info("migrating %s to %s (flags %s)", self.key, dest_uri, ",".join(request.flags))
        task = asyncio.get_running_loop().create_task(
            self.ex.hv.migrate(self.domain_name, request.dest_uri, request.params, request.flags))
        try:
            return await self._follow(task, options)
        finally:
            if not task.done():
                task.cancel()

    async def _follow(self, task: asyncio.Task[None] | None, options: plan.MigrationOptions) -> Outcome:
        """Sample, time out and abort until the migration ends (``task`` None: until libvirt's job
        is gone)."""
        started = time.monotonic()
        best_remaining: int | None = None
        last_progress = started
        downtime_set = aborting = memory_phase = False
        mode = self._state().get("mode") or MigrationMode.PRE_COPY
        paused = False
        while True:
            if task is not None:
                await asyncio.wait({task}, timeout=SAMPLE_SECONDS)
                if task.done():
                    break
            else:
                await asyncio.sleep(SAMPLE_SECONDS)
            try:
                stats = await self.ex.hv.migration_job_stats(self.domain_name)
            except HypervisorError:
                stats = None
            if stats is None:
                if task is None:
                    break
                continue
            initial_downtime = plan.compute_initial_max_downtime(options)
            if not downtime_set and initial_downtime:
                downtime_set = True
                await self._quietly(self.ex.hv.set_max_downtime(self.domain_name, initial_downtime))
            remaining = stats.get("data_remaining")
            if not memory_phase and plan.memory_transfer_started(stats):
                memory_phase, best_remaining = True, None  # the disks are copied: memory's figures start over
            if isinstance(remaining, int) and (best_remaining is None or remaining < best_remaining):
                best_remaining, last_progress = remaining, time.monotonic()
            await self._sample(stats)
            if self._abort_requested() and not aborting:
                aborting = self._aborting = True
                await self._write(lambda v: migration_status.compute_abort_status(
                    v, self.migration_uid, MigrationAbortStatus.ABORTING))
                await self._quietly(self.ex.hv.abort_job(self.domain_name))
                continue
            now = time.monotonic()
            step = plan.compute_timeout_step(options, elapsed=now - started, since_progress=now - last_progress,
                                             data_total_bytes=int(stats.get("data_total") or 0), mode=mode)
            if step is None or self._reason is not None:
                continue
            if step.kind == "abort":
                self._reason = step.reason
                await self._quietly(self.ex.hv.abort_job(self.domain_name))
            elif step.kind == "post-copy":
                mode = MigrationMode.POST_COPY
                await self._quietly(self.ex.hv.start_post_copy(self.domain_name))
                await self._write(lambda v: migration_status.compute_mode_status(v, self.migration_uid, mode))
            elif step.kind == "pause" and not paused:
                paused, mode = True, MigrationMode.PAUSED
                await self._quietly(self.ex.hv.pause(self.domain_name))
                await self._write(lambda v: migration_status.compute_mode_status(v, self.migration_uid, mode))
        return await self._outcome(task, aborting, paused)

    async def _outcome(self, task: asyncio.Task[None] | None, aborting: bool, paused: bool) -> Outcome:
        if task is not None:
            error = task.exception()
            succeeded = error is None
        else:
            error = None
            domain = await self.ex.hv.get_domain(self.domain_name)
            succeeded = domain is None or (not domain.is_active and domain.reason == "Migrated")
        if succeeded:
            return Outcome(True, abort_status=MigrationAbortStatus.FAILED if aborting else None)
        if paused:
            await self._quietly(self.ex.hv.resume(self.domain_name))  # the guest stays here: let it run again
        if self._reason is not None:
            reason = self._reason
        elif aborting:
            reason = ABORTED
        else:
            reason = f"Live migration failed: {getattr(error, 'message', None) or error or 'libvirt job ended'}"
        return Outcome(False, reason, MigrationAbortStatus.SUCCEEDED if aborting else None)

    async def _quietly(self, call: Any) -> None:
        try:
            await call
        except HypervisorError as err:
            log.warning("migration of %s: %s", self.key, err.message)
