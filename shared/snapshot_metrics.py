"""virt-snapshot's metrics, with KubeVirt's names (``pkg/monitoring/metrics/virt-controller/vmsnapshot.go``).

Counted at scrape time from the leader's cached snapshots (a standby reports nothing):

- ``kubevirt_vmsnapshot_succeeded_timestamp_seconds`` (gauge, labels ``name`` = the source VM,
  ``snapshot_name``, ``namespace``): the snapshot's ``status.creationTime`` as Unix seconds, for
  every Succeeded snapshot (KubeVirt sets it when the snapshot turns Succeeded);
- ``kubevirt_vmsnapshot_phase_count`` (this project's, gauge, labels ``phase``, ``namespace``):
  snapshots per phase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from shared.api.snapshot import VirtualMachineSnapshot
from shared.metrics import SourcedCollector

SUCCEEDED_TIMESTAMP = "kubevirt_vmsnapshot_succeeded_timestamp_seconds"
PHASE_COUNT = "kubevirt_vmsnapshot_phase_count"


class SnapshotSource(Protocol):
    """A virt-snapshot manager that can report (None while it is a standby)."""

    def snapshot_samples(self) -> Sequence[VirtualMachineSnapshot] | None:
        """The snapshots to report."""


def parse_rfc3339(text: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time (``Z`` or an offset), None when absent or malformed."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def compute_succeeded_samples(snapshots: Iterable[VirtualMachineSnapshot]) -> list[tuple[tuple[str, str, str], float]]:
    """``((vm name, snapshot name, namespace), creation time in Unix seconds)`` of every
    Succeeded snapshot with a creationTime, sorted by labels."""
    out: list[tuple[tuple[str, str, str], float]] = []
    for snap in snapshots:
        status = snap.status
        if status is None or status.phase != "Succeeded":
            continue
        stamp = parse_rfc3339(status.creation_time)
        if stamp is None:
            continue
        meta = snap.metadata
        out.append(((snap.spec.source.name, (meta.name or "") if meta else "",
                     (meta.namespace or "") if meta else ""), stamp))
    return sorted(out)


def compute_phase_counts(snapshots: Iterable[VirtualMachineSnapshot]) -> dict[tuple[str, str], int]:
    """Snapshots per ``(phase, namespace)``; a snapshot without a phase counts as ``Unset``."""
    counts: Counter[tuple[str, str]] = Counter()
    for snap in snapshots:
        phase = (snap.status.phase if snap.status else None) or "Unset"
        counts[(phase, (snap.metadata.namespace or "") if snap.metadata else "")] += 1
    return dict(counts)


class _SnapshotCollector(SourcedCollector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        snapshots: list[VirtualMachineSnapshot] = []
        for source in list(self.sources):
            samples = source.snapshot_samples()
            if samples is not None:
                snapshots.extend(samples)
        family = GaugeMetricFamily(SUCCEEDED_TIMESTAMP, "Returns the timestamp of successful virtual machine snapshot.",
                                   labels=["name", "snapshot_name", "namespace"])
        for labels, value in compute_succeeded_samples(snapshots):
            family.add_metric(list(labels), value)
        yield family
        phases = GaugeMetricFamily(PHASE_COUNT, "Number of virtual machine snapshots per phase.",
                                   labels=["phase", "namespace"])
        for (phase, namespace), count in sorted(compute_phase_counts(snapshots).items()):
            phases.add_metric([phase, namespace], float(count))
        yield phases


_COLLECTOR = _SnapshotCollector()
REGISTRY.register(_COLLECTOR)


def register_snapshot_source(source: SnapshotSource) -> None:
    """Report ``source``'s snapshots while it lives (weakly held)."""
    _COLLECTOR.register(source)


def unregister_snapshot_source(source: SnapshotSource) -> None:
    """Stop reporting ``source`` (no-op when it was not registered)."""
    _COLLECTOR.unregister(source)
