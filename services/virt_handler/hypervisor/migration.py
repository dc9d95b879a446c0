"""The live-migration operations of the gateway (libvirt's peer-to-peer migration).

``migrate`` runs ``virDomainMigrateToURI3`` on a thread of its own (it lasts as long as the
migration, so it neither occupies the call pool nor has the per-call timeout); the other calls
are short and go through ``LibvirtConnection._call``: the migratable XML, job statistics
(``virDomainGetJobStats``), ``abortJob``, ``migrateSetMaxDowntime``, ``migrateStartPostCopy``,
``migrateSetMaxSpeed``. Each libvirt call is a CLIENT span ``libvirt.<call>`` under the current
span (the migration's trace). Parameters and flags are computed elsewhere
(``services.virt_handler.migration_plan``) and only translated here.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import libvirt

from services.virt_handler.hypervisor.codes import map_libvirt_error
from services.virt_handler.hypervisor.connection import LibvirtConnection
from services.virt_handler.hypervisor_types import HypervisorError

#: job statistics keys that are numbers (libvirt's VIR_DOMAIN_JOB_* names)
_JOB_NONE = 0


class MigrationOperations(LibvirtConnection):
    """Migration calls on one connection; see the module docstring. Errors are ``HypervisorError``
    (``DomainNotFound`` for a missing domain; ``Unsupported`` where the driver cannot migrate, e.g.
    the test driver)."""

    async def migratable_xml(self, name: str) -> str:
        """The domain's XML as a migration destination needs it (``VIR_DOMAIN_XML_MIGRATABLE``)."""
        def blocking() -> str:
            flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
            with self._span("XMLDesc"):
                return str(self._lookup(name).XMLDesc(flags))
        return await self._call(blocking)

    async def migrate(self, name: str, dest_uri: str, params: dict[str, Any], flags: tuple[str, ...]) -> None:
        """Migrate domain ``name`` peer-to-peer to the libvirtd at ``dest_uri`` (``params``: libvirt
        typed-parameter names -> values; ``flags``: ``VIR_MIGRATE_<flag>`` names). Returns once
        libvirt reports success; raises ``HypervisorError`` when the migration failed or was
        aborted (the guest keeps running on the source)."""
        await self._ensure_open()
        value = 0
        for flag in flags:
            value |= getattr(libvirt, f"VIR_MIGRATE_{flag}")

        def blocking() -> None:
            with self._span("migrateToURI3"):
                self._lookup(name).migrateToURI3(dest_uri, params, value)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, contextvars.copy_context().run, blocking)
        except libvirt.libvirtError as err:
            raise map_libvirt_error(err) from err

    async def migration_job_stats(self, name: str) -> dict[str, Any] | None:
        """The statistics of the domain's current job (libvirt ``VIR_DOMAIN_JOB_*`` keys:
        ``data_processed``, ``data_remaining``, ``data_total``, ``memory_iteration``,
        ``memory_dirty_rate``, ``memory_page_size``, ``memory_bps``, ``time_elapsed``,
        ``operation``...), or None when it has no job (or the domain is gone)."""
        def blocking() -> dict[str, Any] | None:
            try:
                stats = self._lookup(name).jobStats(0)
            except libvirt.libvirtError as err:
                if err.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                    return None
                raise
            if not stats or stats.get("type", _JOB_NONE) == _JOB_NONE:
                return None
            return dict(stats)
        return await self._call(blocking)

    async def has_outgoing_migration(self, name: str) -> bool:
        """Whether the domain has an outgoing migration job right now (False for drivers without
        job statistics)."""
        try:
            stats = await self.migration_job_stats(name)
        except HypervisorError as err:
            if err.reason == "Unsupported":
                return False
            raise
        if stats is None:
            return False
        operation = stats.get("operation")
        return operation in (None, libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)

    async def completed_job_stats(self, name: str) -> dict[str, Any] | None:
        """The statistics of the domain's last completed job (on a migration's destination:
        ``downtime`` in ms, QEMU's measure), None when libvirt has none."""
        def blocking() -> dict[str, Any] | None:
            try:
                stats = self._lookup(name).jobStats(  # KEEP: others (virsh domjobinfo --completed) still see them
                    libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
            except libvirt.libvirtError as err:
                if err.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID,
                                            libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    return None
                raise
            return dict(stats) if stats and stats.get("type", _JOB_NONE) != _JOB_NONE else None
        return await self._call(blocking)

    async def abort_job(self, name: str) -> None:
        """Cancel the domain's current job (an outgoing migration: the guest stays here)."""
        def blocking() -> None:
            with self._span("abortJob"):
                self._lookup(name).abortJob()
        await self._call(blocking)

    async def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        """The longest pause (ms) the running migration may cause at the switch-over."""
        def blocking() -> None:
            with self._span("migrateSetMaxDowntime"):
                self._lookup(name).migrateSetMaxDowntime(int(downtime_ms), 0)
        await self._call(blocking)

    async def start_post_copy(self, name: str) -> None:
        """Switch the running migration (started with ``POSTCOPY``) to post-copy."""
        def blocking() -> None:
            with self._span("migrateStartPostCopy"):
                self._lookup(name).migrateStartPostCopy(0)
        await self._call(blocking)
