"""Backup decisions (pure): which disk of the live domain each ``VolumeCopy`` names, the libvirt
``<domainbackup mode='push'>`` document, and the answers of ``BackupStatus``.

One push-mode backup job covers every requested disk, so the copies share one point in time
(libvirt ``formatbackup``: with a ``<disks>`` list only the listed disks take part; each writes
a full copy into its ``<target file>`` with the given ``<driver type>``). A copy is written as
``<target_path>.part`` and renamed to ``<target_path>`` once the whole job completed: a file
without ``.part`` is always a whole copy. Disks are found by the user alias ``ua-<volume>``
that the converter gives each disk (``domain/configurators/disks.py``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from shared import events

PART_SUFFIX = ".part"
RUNNING, COMPLETED, FAILED, NOT_FOUND = "Running", "Completed", "Failed", "NotFound"
# libvirt virDomainJobType
_JOB_COMPLETED, _JOB_FAILED, _JOB_CANCELLED = 3, 4, 5


@dataclass(frozen=True)
class DiskSource:
    """One disk of a live domain: the VMI ``volume`` it serves, libvirt's ``target`` dev
    (``vda``), the ``path`` of its file (None for network/volume sources) and its ``format``."""

    volume: str
    target: str
    path: str | None
    format: str


@dataclass(frozen=True)
class CopyPlan:
    """One disk to copy: ``disk`` into ``part_path`` (renamed to ``final_path`` when complete)."""

    disk: DiskSource
    final_path: str

    @property
    def part_path(self) -> str:
        return self.final_path + PART_SUFFIX


@dataclass(frozen=True)
class JobView:
    """What the handler knows of a backup job: ``phase`` Running/Completed/Failed, bytes copied
    (``processed``) of ``total``, ``message`` on failure."""

    phase: str
    processed: int = 0
    total: int = 0
    message: str = ""


def parse_domain_disks(domain_xml: str) -> dict[str, DiskSource]:
    """The disks of a domain XML by VMI volume name (alias ``ua-<volume>``; disks without such
    an alias are left out). Raises ``xml.etree.ElementTree.ParseError`` for bad XML."""
    disks: dict[str, DiskSource] = {}
    for disk in ET.fromstring(domain_xml).findall("./devices/disk"):
        alias = disk.find("alias")
        name = alias.get("name", "") if alias is not None else ""
        target = disk.find("target")
        if not name.startswith("ua-") or target is None or not target.get("dev"):
            continue
        source = disk.find("source")
        driver = disk.find("driver")
        disks[name[3:]] = DiskSource(volume=name[3:], target=target.get("dev", ""),
                                     path=source.get("file") if source is not None else None,
                                     format=(driver.get("type") if driver is not None else None) or "raw")
    return disks


def compute_copy_plans(volumes: list[events.VolumeCopy],
                       disks: dict[str, DiskSource]) -> list[CopyPlan] | events.CommandResult:
    """The copies for ``volumes`` (in order), or the 422 answer naming the first volume the
    domain has no disk for (or no file-backed disk, which a push backup cannot copy)."""
    if not volumes:
        return events.CommandResult(code=422, reason="Invalid", message="no volume to back up")
    plans = []
    for copy in volumes:
        disk = disks.get(copy.volume_name)
        if disk is None:
            return events.CommandResult(code=422, reason="Invalid",
                                        message=f"the domain has no disk for volume {copy.volume_name!r}")
        if not copy.target_path.startswith("/"):
            return events.CommandResult(code=422, reason="Invalid",
                                        message=f"target path {copy.target_path!r} is not absolute")
        plans.append(CopyPlan(disk=disk, final_path=copy.target_path))
    return plans


def compute_backup_xml(plans: list[CopyPlan]) -> str:
    """libvirt's ``<domainbackup mode='push'>`` copying each planned disk (full copy, qcow2)
    into its ``.part`` file; disks not listed take no part."""
    root = ET.Element("domainbackup", mode="push")
    disks = ET.SubElement(root, "disks")
    for plan in plans:
        disk = ET.SubElement(disks, "disk", name=plan.disk.target, backup="yes", type="file")
        ET.SubElement(disk, "target", file=plan.part_path)
        ET.SubElement(disk, "driver", type="qcow2")
    return ET.tostring(root, encoding="unicode")


def parse_backup_targets(backup_xml: str) -> set[str]:
    """The target files of a running job's ``<domainbackup>`` document (to recognise a job this
    handler started before it restarted)."""
    root = ET.fromstring(backup_xml)
    return {t.get("file", "") for t in root.findall("./disks/disk/target") if t.get("file")}


def compute_job_progress(stats: dict[str, Any] | None) -> tuple[int, int]:
    """``(processed, total)`` bytes from libvirt job statistics (``disk_*`` for a backup job,
    ``data_*`` otherwise); (0, 0) without statistics."""
    if not stats:
        return 0, 0
    for prefix in ("disk", "data"):
        if f"{prefix}_total" in stats:
            return int(stats.get(f"{prefix}_processed", 0)), int(stats[f"{prefix}_total"])
    return 0, 0


def compute_job_outcome(completed: dict[str, Any] | None) -> JobView:
    """How a backup job that no longer runs ended, from libvirt's completed-job statistics
    (None: libvirt kept none, so the outcome is unknown: Failed)."""
    if completed is None:
        return JobView(FAILED, message="the backup job ended and libvirt kept no result")
    processed, total = compute_job_progress(completed)
    kind = completed.get("type")
    if kind == _JOB_COMPLETED:
        return JobView(COMPLETED, processed=total or processed, total=total)
    if kind == _JOB_CANCELLED:
        return JobView(FAILED, processed, total, "the backup job was cancelled")
    return JobView(FAILED, processed, total, str(completed.get("errmsg") or "the backup job failed"))


def compute_backup_status(job: JobView | None, finals_exist: list[bool]) -> dict[str, Any]:
    """The ``BackupStatus`` reply body: from the job when the handler knows it, else from the
    files (every final copy present -> Completed, otherwise NotFound)."""
    if job is None:
        phase = COMPLETED if finals_exist and all(finals_exist) else NOT_FOUND
        job = JobView(phase)
    elif job.phase == COMPLETED and not all(finals_exist):
        job = JobView(FAILED, job.processed, job.total, "a completed copy is missing")
    return {"phase": job.phase, "processedBytes": job.processed, "totalBytes": job.total, "message": job.message}


def compute_stale_parts(phase: str, no_job_for_sure: bool, parts: list[str], parts_in_use: set[str]) -> list[str]:
    """The ``.part`` files of a backup answered ``phase`` that no job can still write, to be removed
    (a handler killed during the copy leaves them: libvirt's job died with QEMU's, a stand-in
    copy with the handler). Only for ``NotFound``, and only when libvirt was asked and runs no job
    writing them (``no_job_for_sure``; a libvirt error proves nothing); never a path a job of this
    handler writes (``parts_in_use``: the ``.part`` paths of its running jobs and begins)."""
    if phase != NOT_FOUND or not no_job_for_sure:
        return []
    return [p for p in parts if p not in parts_in_use]
