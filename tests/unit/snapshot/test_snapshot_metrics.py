"""kubevirt_vmsnapshot_succeeded_timestamp_seconds from the cached snapshots of a leader."""

from __future__ import annotations

from prometheus_client import generate_latest

from shared import snapshot_metrics
from shared.api.snapshot import VirtualMachineSnapshot
from shared.informer import decode_as


def _snap(name, phase, creation_time=None):
    status = {"phase": phase}
    if creation_time:
        status["creationTime"] = creation_time
    return decode_as(VirtualMachineSnapshot, {"metadata": {"name": name, "namespace": "ns"},
                                              "spec": {"source": {"kind": "VirtualMachine", "name": "vm1"}},
                                              "status": status})


class _Leader:
    def __init__(self, snaps):
        self.snaps = snaps

    def snapshot_samples(self):
        return self.snaps


def test_succeeded_timestamp_and_phase_counts():
    source = _Leader([_snap("a", "Succeeded", "2026-01-01T00:00:10Z"), _snap("b", "InProgress")])
    snapshot_metrics.register_snapshot_source(source)
    try:
        text = generate_latest().decode()
    finally:
        snapshot_metrics.unregister_snapshot_source(source)
    assert ('kubevirt_vmsnapshot_succeeded_timestamp_seconds{name="vm1",namespace="ns",snapshot_name="a"} '
            '1.76722561e+09') in text
    assert 'snapshot_name="b"' not in text
    assert 'kubevirt_vmsnapshot_phase_count{namespace="ns",phase="InProgress"} 1.0' in text
