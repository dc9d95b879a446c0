"""The snapshot operations of the gateway: filesystem freeze/thaw through the guest agent and
libvirt push-mode backup jobs.

``fs_freeze``/``fs_thaw`` are ``virDomainFSFreeze``/``virDomainFSThaw`` (every mounted
filesystem; the guest agent does the work, so a silent agent makes the call hang until the
per-call timeout). ``backup_begin`` is ``virDomainBackupBegin`` with a ``<domainbackup
mode='push'>`` document computed elsewhere (``services.virt_handler.backup_plan``); the job runs
inside libvirt/QEMU after the call returns, ``backup_job`` and ``completed_backup_job`` read its
statistics (``virDomainGetJobStats``), ``backup_xml`` the running job's document
(``virDomainBackupGetXMLDesc``, how a restarted handler recognises its job) and ``abort_job``
(inherited) cancels it. Each call runs through ``LibvirtConnection._call`` (thread pool, timeout,
error mapping) as a CLIENT span ``libvirt.<call>``. The test driver supports freeze/thaw but no
backup (``Unsupported``).
"""

from __future__ import annotations

from typing import Any

import libvirt

from services.virt_handler.hypervisor.migration import MigrationOperations

_NOT_THERE = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)


def _backup_only(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """``stats`` when they are a backup job's (or name no operation), else None."""
    if stats is None or stats.get("operation") not in (None, libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP):
        return None
    return stats


class SnapshotOperations(MigrationOperations):
    """Freeze/thaw and backup calls on one connection (module docstring). Errors are
    ``HypervisorError`` (``DomainNotFound`` for a missing domain, ``AgentUnresponsive`` when the
    guest agent does not answer, ``OperationInvalid`` when the domain does not run or another job
    runs, ``Unsupported`` where the driver cannot do it)."""

    async def fs_freeze(self, name: str) -> int:
        """Freeze every guest filesystem (``virDomainFSFreeze``); returns how many were frozen."""
        def blocking() -> int:
            with self._span("fsFreeze"):
                return int(self._lookup(name).fsFreeze(None, 0))
        return await self._call(blocking)

    async def fs_thaw(self, name: str) -> int:
        """Thaw every guest filesystem (``virDomainFSThaw``; a thawed guest answers 0)."""
        def blocking() -> int:
            with self._span("fsThaw"):
                return int(self._lookup(name).fsThaw(None, 0))
        return await self._call(blocking)

    async def backup_begin(self, name: str, backup_xml: str) -> None:
        """Start a backup job of domain ``name`` (``virDomainBackupBegin``, no checkpoint). Returns
        once the point in time is fixed; the copy goes on inside QEMU."""
        def blocking() -> None:
            with self._span("backupBegin"):
                self._lookup(name).backupBegin(backup_xml, None, 0)
        await self._call(blocking)

    async def backup_job(self, name: str) -> dict[str, Any] | None:
        """The statistics of the domain's running backup job (libvirt keys ``disk_total``,
        ``disk_processed``, ``operation``...), None when no backup job runs or the domain is gone."""
        return _backup_only(await self.migration_job_stats(name))

    async def completed_backup_job(self, name: str) -> dict[str, Any] | None:
        """The statistics of the domain's last completed job when it was a backup (``type``:
        ``VIR_DOMAIN_JOB_COMPLETED`` 3, ``FAILED`` 4, ``CANCELLED`` 5; ``errmsg`` on failure);
        None when libvirt keeps none. Kept for later readers (``KEEP_COMPLETED``)."""
        return _backup_only(await self.completed_job_stats(name))

    async def backup_xml(self, name: str) -> str | None:
        """The ``<domainbackup>`` document of the domain's running backup job, None when none runs."""
        def blocking() -> str | None:
            try:
                return str(self._lookup(name).backupGetXMLDesc(0))
            except libvirt.libvirtError as err:
                if err.get_error_code() in (*_NOT_THERE, libvirt.VIR_ERR_NO_DOMAIN_BACKUP):
                    return None
                raise
        return await self._call(blocking)
