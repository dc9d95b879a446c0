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


def test_snapshot_and_content_queues_are_named_in_metrics():
    """kubevirt_workqueue_* carry name="virt-snapshot-snapshot"/"virt-snapshot-content" (as the
    restore and provisioner queues are named), not name=""."""
    from types import SimpleNamespace

    from services.virt_snapshot.content_controller import ContentController
    from services.virt_snapshot.snapshot_controller import SnapshotController

    class _Informer:
        def add_handler(self, handler):
            pass

    parts = SimpleNamespace(store=None, recorder=None, snapshots=_Informer(), contents=_Informer(),
                            vms=_Informer(), vmis=_Informer(), pvcs=_Informer())
    assert SnapshotController(parts).queue.name == "virt-snapshot-snapshot"
    assert ContentController(parts).queue.name == "virt-snapshot-content"
