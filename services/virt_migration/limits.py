"""How many migrations may run (pure): ``parallelMigrationsPerCluster`` and
``parallelOutboundMigrationsPerNode``.

KubeVirt counts every VMIM past Pending and not final (``RUNNING_MIGRATION_PHASES``) against both
limits, the per-node one by the migration's source node, and starts Pending migrations oldest
first (``pkg/virt-controller/watch/migration/migration.go``, ``handlePendingPodTimeout`` /
``canMigrateVMI`` with the running-migration count). Here a Pending VMIM sees the running ones
plus every OLDER Pending VMIM that would be started before it (an oldest-first simulation), so
two VMIMs decided one after the other never both take the last slot, whichever is reconciled
first; the caller counts its own writes not yet seen by the watch as running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MigrationLimits:
    """``parallelMigrationsPerCluster`` and ``parallelOutboundMigrationsPerNode``."""

    cluster: int = 5
    per_node: int = 2


@dataclass(frozen=True)
class MigrationCounts:
    """Migrations counted against the limits as one Pending VMIM sees them: ``cluster`` in total,
    ``source_node`` of those leaving the same node as this VMIM's VMI."""

    cluster: int = 0
    source_node: int = 0


@dataclass(frozen=True)
class WaitingMigration:
    """A Pending VMIM ready to start: its key, ``creationTimestamp`` (RFC 3339) and the node its
    VMI runs on."""

    key: str
    created: str
    source_node: str


def has_capacity(counts: MigrationCounts, limits: MigrationLimits) -> bool:
    """Whether one more migration fits: fewer than ``limits.cluster`` in total and fewer than
    ``limits.per_node`` from the source node."""
    return counts.cluster < limits.cluster and counts.source_node < limits.per_node


def compute_counts_for(key: str, running_sources: Iterable[str | None], waiting: Iterable[WaitingMigration],
                       limits: MigrationLimits) -> MigrationCounts:
    """The counts VMIM ``key`` (one of ``waiting``) sees: the running migrations (their source
    nodes; None when unknown, counted only cluster-wide) plus the older waiting ones that an
    oldest-first start (by creationTimestamp, then key) admits before it. Raises KeyError when
    ``key`` is not in ``waiting``."""
    by_node: Counter[str] = Counter()
    total = 0
    for node in running_sources:
        total += 1
        if node:
            by_node[node] += 1
    for candidate in sorted(waiting, key=lambda w: (w.created, w.key)):
        counts = MigrationCounts(cluster=total, source_node=by_node[candidate.source_node])
        if candidate.key == key:
            return counts
        if has_capacity(counts, limits):
            total += 1
            by_node[candidate.source_node] += 1
    raise KeyError(key)
