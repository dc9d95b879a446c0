"""virt-handler's live-migration metrics, with KubeVirt's names (kubevirt-api.md §11; KubeVirt's
``pkg/monitoring/metrics/virt-handler/migrationdomainstats``), from libvirt's job statistics.

A block of its own beside :mod:`shared.metrics` (same registry; that module is at its size
limit). Gauges per VMI and node (labels ``namespace``, ``name``, ``node``): the progress figures
of the source's samples, start and end times (Unix s), and the QEMU-measured downtime of the
last switch-over (``kubevirt_vmi_migration_last_downtime_duration_seconds``, set by the target
that took the VMI over). When a migration ends the source sets the end values
(:func:`compute_migration_end_values`: nothing remains after success); once the VMI has left a
node (or is gone) that node's series are removed (:func:`forget_migration`), as KubeVirt's
collector reports only the VMIs of its node.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Gauge

# -- virt-handler: live migration, from libvirt's job statistics ------------------------------------------
_MIGRATION_GAUGES = {  # progress key (or time) -> (metric, help), labels namespace/name/node; real samples only
    "dataTotalBytes": ("kubevirt_vmi_migration_data_bytes_total", "The total Guest OS data to be migrated."),
    "dataProcessedBytes": ("kubevirt_vmi_migration_data_processed_bytes", "The Guest OS data migrated so far."),
    "dataRemainingBytes": ("kubevirt_vmi_migration_data_remaining_bytes", "The Guest OS data left to migrate."),
    "dirtyMemoryRateBytes": ("kubevirt_vmi_migration_dirty_memory_rate_bytes", "The rate of memory being dirtied."),
    "transferRateBytes": ("kubevirt_vmi_migration_memory_transfer_rate_bytes", "The memory transfer rate."),
    "start": ("kubevirt_vmi_migration_start_time_seconds", "The time at which the migration started."),
    "end": ("kubevirt_vmi_migration_end_time_seconds", "The time at which the migration ended."),
    "downtime": ("kubevirt_vmi_migration_last_downtime_duration_seconds", "QEMU-measured switch-over pause."),
}
MIGRATION_GAUGES = {k: Gauge(n, h, ("namespace", "name", "node")) for k, (n, h) in _MIGRATION_GAUGES.items()}


def observe_migration(labels: tuple[str, str, str], progress: dict[str, Any] | None = None, *,
                      start: float | None = None, end: float | None = None, downtime_ms: int | None = None) -> None:
    """Set one VMI's migration gauges (namespace, name, node): progress sample, times (Unix s), downtime (ms)."""
    times = {"start": start, "end": end, "downtime": None if downtime_ms is None else downtime_ms / 1e3}
    for key, value in {**(progress or {}), **times}.items():
        if key in MIGRATION_GAUGES and isinstance(value, (int, float)):
            MIGRATION_GAUGES[key].labels(*labels).set(value)


def compute_migration_end_values(last: dict[str, Any] | None, succeeded: bool) -> dict[str, int]:
    """Progress gauges' values when a migration ends: after success nothing remains
    (``dataRemainingBytes`` 0, ``dataProcessedBytes`` = the last ``dataTotalBytes``); after a failure
    the last sample stands ({})."""
    if not succeeded:
        return {}
    total = (last or {}).get("dataTotalBytes")
    return {"dataRemainingBytes": 0, **({"dataProcessedBytes": total} if isinstance(total, int) else {})}


def forget_migration(labels: tuple[str, str, str]) -> None:
    """Remove one VMI's migration series on one node (the VMI left the node or is gone)."""
    for gauge in MIGRATION_GAUGES.values():
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
