"""virt-handler's migration gauges: end values after a migration and removal once the VMI left."""

from __future__ import annotations

import pytest

from shared import handler_migration_metrics as hm
from shared.metrics import compute_metrics_text

LABELS = ("default", "vm-metrics", "node-x")


@pytest.mark.parametrize("last,succeeded,expected", [
    ({"dataTotalBytes": 278_000_000, "dataProcessedBytes": 270_000_000, "dataRemainingBytes": 7_700_000}, True,
     {"dataRemainingBytes": 0, "dataProcessedBytes": 278_000_000}),
    (None, True, {"dataRemainingBytes": 0}),
    ({"dataTotalBytes": 10, "dataRemainingBytes": 5}, False, {}),  # a failure keeps the last sample
])
def test_end_values(last, succeeded, expected):
    assert hm.compute_migration_end_values(last, succeeded) == expected


def series(text):
    return [line for line in text.splitlines() if 'name="vm-metrics"' in line]


def test_success_sets_remaining_to_zero_and_leaving_the_node_removes_the_series():
    last = {"dataTotalBytes": 100, "dataProcessedBytes": 92, "dataRemainingBytes": 8}
    hm.observe_migration(LABELS, last, start=1.0, downtime_ms=40)
    hm.observe_migration(LABELS, hm.compute_migration_end_values(last, True), end=2.0)
    text = compute_metrics_text().decode()
    assert 'kubevirt_vmi_migration_data_remaining_bytes{name="vm-metrics",namespace="default",node="node-x"} 0.0' \
        in text
    assert 'kubevirt_vmi_migration_data_processed_bytes{name="vm-metrics",namespace="default",node="node-x"} 100.0' \
        in text
    hm.forget_migration(LABELS)
    assert series(compute_metrics_text().decode()) == []
    hm.forget_migration(LABELS)  # idempotent
