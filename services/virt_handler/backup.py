"""Point-in-time copies of a running domain's disks (``BackupVolumes``, ``BackupStatus``,
``AbortBackup``), performing what ``backup_plan`` decides.

``BackupKeeper.begin`` starts ONE libvirt push-mode backup job (``virDomainBackupBegin``) for
every requested disk, so the copies share one point in time; each is written to
``<target>.part``. A watcher polls the job (``virDomainGetJobStats``) until it ends, reads how it
ended (completed-job statistics), renames every ``.part`` to its final name when it completed
and removes them otherwise. ``status`` answers from the job, else from the files; ``abort``
cancels the job (``virDomainAbortJob``) and removes the partial files. A handler that restarted
while libvirt still runs its job recognises it by its target files
(``virDomainBackupGetXMLDesc``) and watches it again.

On libvirt's test driver (no backup support) a STAND-IN BACKUP makes the same files with
``qemu-img convert`` from each disk's source file, so the control plane can be tested fast; it is
not a point-in-time copy of a running guest. One span ``backup <volume>`` per copied volume,
from the start of the job to its end, under the command's trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from services.virt_handler import backup_plan as plan
from services.virt_handler.hypervisor_types import HypervisorError
from shared import events, tracing
from shared.api.vocabulary import format_time, utc_now

log = logging.getLogger(__name__)

SERVICE = "virt-handler"
#: finished jobs remembered for ``BackupStatus`` (older ones are answered from the files)
KEPT_FINISHED = 64


@dataclass
class BackupJob:
    """One backup job of domain ``domain``: its copies, ``creation_time`` (RFC 3339, the point
    in time), what is known of it (``view``), whether it is the test driver's ``stand_in``."""

    backup_id: str
    domain: str
    plans: list[plan.CopyPlan]
    creation_time: str
    stand_in: bool
    view: plan.JobView = field(default_factory=lambda: plan.JobView(plan.RUNNING))
    task: asyncio.Task[None] | None = None


def _ok(creation_time: str) -> events.CommandResult:
    return events.CommandResult(body={"creationTime": creation_time})


def _conflict(message: str) -> events.CommandResult:
    return events.CommandResult(code=409, reason="Conflict", message=message)


def _finals_exist(volumes: list[events.VolumeCopy]) -> list[bool]:
    return [os.path.isfile(v.target_path) for v in volumes]


def _remove_parts(paths: list[str]) -> list[str]:
    """Remove ``paths`` (absent ones are fine); the ones that existed."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


class BackupKeeper:
    """The backup jobs of this node (module docstring). ``hypervisor``: the gateway;
    ``clock``: current UTC datetime; ``poll_interval``: seconds between job polls."""

    def __init__(self, hypervisor: Any, *, clock: Callable[[], datetime] = utc_now, poll_interval: float = 0.2):
        self.hv = hypervisor
        self.clock = clock
        self.poll_interval = poll_interval
        self.jobs: dict[str, BackupJob] = {}
        self._beginning: dict[str, set[str]] = {}  # backup id -> the .part paths a begin prepares

    # -- commands ----------------------------------------------------------------------------
    async def begin(self, command: events.BackupVolumes, name: str) -> events.CommandResult:
        """Start the backup (idempotent by ``backup_id``); 200 with ``creationTime`` once the
        point in time is fixed, 409 when another job runs, 422 for an unknown volume, 500 when
        libvirt fails."""
        job = self.jobs.get(command.backup_id)
        if job is not None and job.view.phase in (plan.RUNNING, plan.COMPLETED):
            return _ok(job.creation_time)
        finals = await asyncio.to_thread(_finals_exist, command.volumes)
        if job is None and finals and all(finals):  # completed before this handler (re)started
            return _ok(await asyncio.to_thread(self._oldest_mtime, command.volumes))
        plans = plan.compute_copy_plans(command.volumes, plan.parse_domain_disks(await self.hv.get_domain_xml(name)))
        if isinstance(plans, events.CommandResult):
            return plans
        adopted = await self._adopt(command.backup_id, name, plans)
        if adopted is not None:
            return _ok(adopted.creation_time)
        if any(j.domain == name and j.view.phase == plan.RUNNING for j in self.jobs.values()):
            return _conflict(f"another backup job runs on domain {name}")
        self._beginning[command.backup_id] = {p.part_path for p in plans}
        try:
            await asyncio.to_thread(self._prepare, plans)
            creation_time = format_time(self.clock())
            stand_in = False
            try:
                await self.hv.backup_begin(name, plan.compute_backup_xml(plans))
            except HypervisorError as err:
                if err.reason != "Unsupported":
                    tracing.mark_failed(err.reason, err.message)
                    code = 409 if err.reason == "OperationInvalid" else 500
                    return events.CommandResult(code=code, reason="Conflict" if code == 409 else "InternalError",
                                                message=err.message)
                stand_in = True  # test driver: STAND-IN BACKUP
        finally:
            self._beginning.pop(command.backup_id, None)
        self._start(BackupJob(command.backup_id, name, plans, creation_time, stand_in))
        log.info("backup %s of %s started (%s)%s", command.backup_id, name,
                 ", ".join(p.disk.volume for p in plans), " as a STAND-IN copy" if stand_in else "")
        return _ok(creation_time)

    async def status(self, command: events.BackupStatus, name: str) -> events.CommandResult:
        """``BackupStatus``: the body ``{phase, processedBytes, totalBytes, message}``. A backup
        answered ``NotFound`` (no job on this node, e.g. the handler was killed during the copy)
        has its leftover ``.part`` files removed (``backup_plan.compute_stale_parts``)."""
        job = self.jobs.get(command.backup_id)
        checked = False
        if job is None:
            job, checked = await self._adopt_unknown_checked(command, name)
        finals = await asyncio.to_thread(_finals_exist, command.volumes)
        body = plan.compute_backup_status(job.view if job else None, finals)
        stale = plan.compute_stale_parts(body["phase"], checked and job is None,
                                         [v.target_path + plan.PART_SUFFIX for v in command.volumes],
                                         self._parts_in_use())
        removed = await asyncio.to_thread(_remove_parts, stale)
        if removed:
            log.warning("backup %s of %s: no job runs for it; removed its partial copies %s",
                        command.backup_id, name, ", ".join(removed))
        return events.CommandResult(body=body)

    async def abort(self, command: events.AbortBackup, name: str) -> events.CommandResult:
        """``AbortBackup``: cancel the job if it runs, remove its partial files (idempotent)."""
        job = self.jobs.get(command.backup_id) or await self._adopt_unknown(command, name)
        if job is not None and job.view.phase == plan.RUNNING:
            if job.stand_in:
                if job.task is not None:
                    job.task.cancel()
            else:
                try:
                    await self.hv.abort_job(name)
                except HypervisorError as err:
                    if err.reason not in ("OperationInvalid", "NotFound"):  # the job just ended
                        return events.CommandResult(code=500, reason="InternalError", message=err.message)
            if job.task is not None:
                await asyncio.gather(job.task, return_exceptions=True)
            job.view = plan.JobView(plan.FAILED, job.view.processed, job.view.total, "the backup was aborted")
        await asyncio.to_thread(_remove_parts, [v.target_path + plan.PART_SUFFIX for v in command.volumes])
        return events.CommandResult()

    async def stop(self) -> None:
        """Stop watching (libvirt's jobs go on; a restarted handler adopts them; a stand-in
        copy is cancelled and its partial files stay until ``AbortBackup`` or a new begin)."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- jobs --------------------------------------------------------------------------------
    def _start(self, job: BackupJob) -> None:
        self.jobs[job.backup_id] = job
        job.task = asyncio.get_running_loop().create_task(self._watch(job), name=f"backup-{job.backup_id}")
        finished = [k for k, j in self.jobs.items() if j.view.phase != plan.RUNNING]
        for key in finished[:-KEPT_FINISHED] if len(finished) > KEPT_FINISHED else []:
            del self.jobs[key]

    async def _adopt(self, backup_id: str, name: str, plans: list[plan.CopyPlan]) -> BackupJob | None:
        """The libvirt job running on ``name`` when it writes exactly these ``.part`` files (a
        job this handler started before it restarted), now watched again; else None."""
        try:
            running = await self.hv.backup_xml(name)
        except HypervisorError as err:
            if err.reason == "Unsupported":
                return None
            raise
        if running is None or plan.parse_backup_targets(running) != {p.part_path for p in plans}:
            return None
        job = BackupJob(backup_id, name, plans, format_time(self.clock()), stand_in=False)
        self._start(job)
        log.info("backup %s of %s: watching the job libvirt still runs", backup_id, name)
        return job

    async def _adopt_unknown(self, command: events.BackupStatus | events.AbortBackup,
                             name: str) -> BackupJob | None:
        return (await self._adopt_unknown_checked(command, name))[0]

    async def _adopt_unknown_checked(self, command: events.BackupStatus | events.AbortBackup,
                                     name: str) -> tuple[BackupJob | None, bool]:
        """The libvirt job still writing this backup's copies, adopted (``_adopt``), and whether
        libvirt was asked at all (False when the domain's XML could not be read or names no disk
        for a volume: then a missing job proves nothing)."""
        try:
            disks = plan.parse_domain_disks(await self.hv.get_domain_xml(name))
        except HypervisorError:
            return None, False
        plans = plan.compute_copy_plans(command.volumes, disks)
        if isinstance(plans, events.CommandResult):
            return None, False
        return await self._adopt(command.backup_id, name, plans), True

    def _parts_in_use(self) -> set[str]:
        """The ``.part`` paths of this handler's running jobs and of the begins under way."""
        used = {p.part_path for j in self.jobs.values() if j.view.phase == plan.RUNNING for p in j.plans}
        return used.union(*self._beginning.values())

    async def _watch(self, job: BackupJob) -> None:
        spans = self._open_spans(job)
        try:
            view = await (self._stand_in_copy(job) if job.stand_in else self._follow(job))
        except asyncio.CancelledError:
            view = plan.JobView(plan.FAILED, job.view.processed, job.view.total, "the backup was aborted")
            job.view = view
            if job.stand_in:  # its copy was killed; a libvirt job goes on and is adopted later
                await asyncio.to_thread(_remove_parts, [p.part_path for p in job.plans])
            self._close_spans(spans, view)
            raise
        except Exception as err:  # noqa: BLE001 - any failure ends the job as Failed
            view = plan.JobView(plan.FAILED, job.view.processed, job.view.total, str(err))
        if view.phase == plan.COMPLETED:
            try:
                await asyncio.to_thread(self._publish, job.plans)
            except OSError as err:
                view = plan.JobView(plan.FAILED, view.processed, view.total, f"renaming the copies failed: {err}")
        if view.phase != plan.COMPLETED:
            await asyncio.to_thread(_remove_parts, [p.part_path for p in job.plans])
            log.warning("backup %s of %s failed: %s", job.backup_id, job.domain, view.message)
        else:
            log.info("backup %s of %s completed (%d bytes)", job.backup_id, job.domain, view.total)
        job.view = view
        self._close_spans(spans, view)

    async def _follow(self, job: BackupJob) -> plan.JobView:
        """Poll libvirt's job until it ends; its outcome."""
        failures = 0
        while True:
            try:
                stats = await self.hv.backup_job(job.domain)
                if stats is None:
                    return plan.compute_job_outcome(await self.hv.completed_backup_job(job.domain))
                failures = 0
            except HypervisorError as err:
                failures += 1
                if failures >= 10:
                    return plan.JobView(plan.FAILED, job.view.processed, job.view.total, err.message)
                stats = None
            if stats is not None:
                processed, total = plan.compute_job_progress(stats)
                job.view = plan.JobView(plan.RUNNING, processed, total)
            await asyncio.sleep(self.poll_interval)

    async def _stand_in_copy(self, job: BackupJob) -> plan.JobView:
        """STAND-IN BACKUP (test driver): ``qemu-img convert`` of each disk's source file."""
        processed = total = 0
        for p in job.plans:
            source = p.disk.path
            if source is None or not os.path.isfile(source):
                return plan.JobView(plan.FAILED, processed, total, f"stand-in backup: no file {source} "
                                                                     f"for volume {p.disk.volume}")
            total += os.path.getsize(source)
        for p in job.plans:
            proc = await asyncio.create_subprocess_exec(
                "qemu-img", "convert", "-q", "-f", p.disk.format, "-O", "qcow2", p.disk.path or "", p.part_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await proc.communicate()
            except asyncio.CancelledError:
                proc.kill()
                await proc.wait()
                raise
            if proc.returncode != 0:
                return plan.JobView(plan.FAILED, processed, total, f"qemu-img convert: {err.decode().strip()}")
            processed += os.path.getsize(p.disk.path or "")
            job.view = plan.JobView(plan.RUNNING, processed, total)
        return plan.JobView(plan.COMPLETED, processed, total)

    # -- files and spans ---------------------------------------------------------------------
    @staticmethod
    def _prepare(plans: list[plan.CopyPlan]) -> None:
        """Target directories exist (traversable by QEMU); no stale ``.part`` is in the way."""
        for p in plans:
            Path(p.final_path).parent.mkdir(parents=True, exist_ok=True)
        _remove_parts([p.part_path for p in plans])

    @staticmethod
    def _publish(plans: list[plan.CopyPlan]) -> None:
        """Every ``.part`` becomes its final name (each rename atomic)."""
        for p in plans:
            os.chmod(p.part_path, 0o644)
            os.replace(p.part_path, p.final_path)

    @staticmethod
    def _oldest_mtime(volumes: list[events.VolumeCopy]) -> str:
        oldest = min(os.path.getmtime(v.target_path) for v in volumes)
        return format_time(datetime.fromtimestamp(oldest, tz=timezone.utc))

    @staticmethod
    def _open_spans(job: BackupJob) -> list[Span]:
        if not tracing.has_current_span():
            return []
        tracer = tracing.get_tracer(SERVICE)
        return [tracer.start_span(f"backup {p.disk.volume}", attributes={
            "kubevirt.volume": p.disk.volume, "kubevirt.backup_id": job.backup_id, "kubevirt.stand_in": job.stand_in,
            "kubevirt.target": p.final_path}) for p in job.plans]

    @staticmethod
    def _close_spans(spans: list[Span], view: plan.JobView) -> None:
        for span in spans:
            span.set_attribute("kubevirt.bytes_total", view.total)
            if view.phase != plan.COMPLETED:
                span.set_status(Status(StatusCode.ERROR, view.message))
            span.end()
