"""virt-migration's metrics, with KubeVirt's names (``pkg/monitoring/metrics/virt-controller``:
``migrationstats_collector.go``, ``migration_metrics.go``, ``vmistats_collector.go``).

A block of its own beside :mod:`shared.metrics` (same registry) because that module is at its
size limit. Counted at scrape time from the leader's caches (a standby reports nothing):

- ``kubevirt_vmi_migrations_in_{pending,scheduling,running,unset}_phase`` (gauges; "running" is
  every phase from Scheduled to Running, as KubeVirt counts it);
- ``kubevirt_vmi_migration_succeeded`` / ``kubevirt_vmi_migration_failed`` (gauge 1 per final
  VMIM, labels ``vmi``, ``vmim``, ``namespace``: KubeVirt's are gauges of the cached VMIMs);
- ``kubevirt_vmi_non_evictable`` (1 per VMI whose eviction strategy asks for a live migration it
  cannot do, else 0; labels ``node``, ``namespace``, ``name``; alert ``VMCannotBeEvicted``);

and observed on every phase change written:
``kubevirt_vmi_migration_phase_transition_time_from_creation_seconds`` (histogram, label
``phase``, KubeVirt's phase-transition buckets).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily

from shared.metrics import PHASE_TRANSITION_BUCKETS, SourcedCollector

MIGRATION_PHASE_TRANSITION_FROM_CREATION = Histogram(
    "kubevirt_vmi_migration_phase_transition_time_from_creation_seconds",
    "Histogram of VM migration phase transitions duration from creation time in seconds.",
    ["phase"], buckets=PHASE_TRANSITION_BUCKETS,
)

#: gauge name -> help (the four phase gauges, unlabelled)
PHASE_GAUGES = {
    "pending": ("kubevirt_vmi_migrations_in_pending_phase", "Number of current pending migrations."),
    "scheduling": ("kubevirt_vmi_migrations_in_scheduling_phase", "Number of current scheduling migrations."),
    "running": ("kubevirt_vmi_migrations_in_running_phase", "Number of current running migrations."),
    "unset": ("kubevirt_vmi_migrations_in_unset_phase",
              "Number of current unset migrations. These are pending items the virt-controller hasn't "
              "processed yet from the queue."),
}


@dataclass
class MigrationSamples:
    """One source's values: VMIMs per phase group (keys of :data:`PHASE_GAUGES`), the
    (vmi, vmim, namespace) of succeeded and failed VMIMs, and (node, namespace, name) -> 0/1
    of non-evictable VMIs."""

    phases: dict[str, int] = field(default_factory=dict)
    succeeded: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    non_evictable: dict[tuple[str, str, str], float] = field(default_factory=dict)


class MigrationSource(Protocol):
    """A virt-migration controller that can report (None while it is a standby)."""

    def migration_samples(self) -> MigrationSamples | None:
        """This source's current values."""


class _MigrationCollector(SourcedCollector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        samples = [s for s in (src.migration_samples() for src in list(self.sources)) if s is not None]
        for group, (name, doc) in PHASE_GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=sum(s.phases.get(group, 0) for s in samples))
        for name, doc, attr in (("kubevirt_vmi_migration_succeeded", "Indicates if the VMI migration succeeded.",
                                 "succeeded"),
                                ("kubevirt_vmi_migration_failed", "Indicates if the VMI migration failed.", "failed")):
            family = GaugeMetricFamily(name, doc, labels=["vmi", "vmim", "namespace"])
            for sample in samples:
                for labels in sorted(getattr(sample, attr)):
                    family.add_metric(list(labels), 1.0)
            yield family
        family = GaugeMetricFamily(
            "kubevirt_vmi_non_evictable",
            "Indication for a VirtualMachine that its eviction strategy is set to Live Migration "
            "but is not migratable.",
            labels=["node", "namespace", "name"])
        for sample in samples:
            for labels, value in sorted(sample.non_evictable.items()):
                family.add_metric(list(labels), value)
        yield family


_COLLECTOR = _MigrationCollector()
REGISTRY.register(_COLLECTOR)


def register_migration_source(source: MigrationSource) -> None:
    """Report ``source``'s samples while it lives (weakly held)."""
    _COLLECTOR.register(source)


def unregister_migration_source(source: MigrationSource) -> None:
    """Stop reporting ``source`` (no-op when it was not registered)."""
    _COLLECTOR.unregister(source)


def observe_migration_phase(phase: str, seconds_since_creation: float) -> None:
    """Record one VMIM phase change ``seconds_since_creation`` after the VMIM was created."""
    MIGRATION_PHASE_TRANSITION_FROM_CREATION.labels(phase).observe(max(seconds_since_creation, 0.0))
