"""What ``virtctl migrate --wait`` prints (pure functions of the VMIM) and its argument parsing."""

import click
import pytest

from services.virtctl.migrate_command import compute_new_migration, parse_node_selector
from services.virtctl.migration_progress import (
    FollowState,
    compute_bar,
    compute_follow_step,
    compute_outcome,
    compute_phase_line,
    compute_progress_detail,
    format_bytes,
    format_rate,
    format_seconds,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(("value", "text"), [
    (None, "?"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (256 * MiB, "256.0 MiB"),
    (1536 * MiB, "1.5 GiB"), (5 * 1024**5, "5120.0 TiB"),
])
def test_format_bytes(value, text):
    assert format_bytes(value) == text


def test_format_rate_and_seconds():
    assert format_rate(int(95.3 * MiB)) == "95.3 MiB/s"
    assert format_rate(None) == "?"
    assert [format_seconds(s) for s in (0.04, 12.34, 59.9, 125)] == ["0.0s", "12.3s", "59.9s", "2m05s"]


@pytest.mark.parametrize(("progress", "detail"), [
    ({}, None),
    ({"dataRemainingBytes": 5}, None),
    ({"dataProcessedBytes": 128 * MiB, "dataTotalBytes": 256 * MiB, "dataRemainingBytes": 130 * MiB,
      "memoryIteration": 2, "transferRateBytes": 100 * MiB, "dirtyMemoryRateBytes": 3 * MiB},
     "128.0 MiB of 256.0 MiB transferred, 130.0 MiB remaining, iteration 2, 100.0 MiB/s, dirtying 3.0 MiB/s"),
    ({"dataProcessedBytes": 1024, "dirtyMemoryRateBytes": 0}, "1.0 KiB transferred"),
])
def test_progress_detail(progress, detail):
    assert compute_progress_detail(progress) == detail


@pytest.mark.parametrize(("progress", "bar"), [
    ({}, None),
    ({"dataProcessedBytes": 10, "dataRemainingBytes": 30, "dataTotalBytes": 20}, (10, 40)),
    ({"dataProcessedBytes": 10, "dataTotalBytes": 20}, (10, 20)),
    ({"dataProcessedBytes": 30, "dataTotalBytes": 20}, (30, 30)),
    ({"dataProcessedBytes": 10}, None),
])
def test_bar(progress, bar):
    assert compute_bar(progress) == bar


def vmim(phase, state=None, conditions=None):
    status = {"phase": phase, "migrationState": state or {}}
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"name": "kubevirt-migrate-vm-x1"}, "status": status}


@pytest.mark.parametrize(("obj", "ok", "message"), [
    (vmim("Running"), None, None),
    (vmim("Succeeded", {"sourceNode": "node-1", "targetNode": "node-2", "progress": {"downtimeMs": 42}}), True,
     "Migration kubevirt-migrate-vm-x1 succeeded from node-1 to node-2: downtime 42 ms (QEMU-reported), total 12.5s"),
    (vmim("Succeeded"), True,
     "Migration kubevirt-migrate-vm-x1 succeeded: downtime not reported (QEMU-reported), total 12.5s"),
    (vmim("Failed", {"failed": True, "failureReason": "progress timeout: no progress for 150s"}), False,
     "migration kubevirt-migrate-vm-x1 failed: progress timeout: no progress for 150s"),
    (vmim("Failed", {"abortStatus": "Succeeded"}), False, "migration kubevirt-migrate-vm-x1 was cancelled after 12.5s"),
    (vmim("Failed", conditions=[{"type": "migrationAbortRequested", "status": "True"}]), False,
     "migration kubevirt-migrate-vm-x1 was cancelled after 12.5s"),
    (vmim("Failed", conditions=[{"type": "Other", "status": "True", "message": "VMI went away"}]), False,
     "migration kubevirt-migrate-vm-x1 failed: VMI went away"),
    (vmim("Failed"), False, "migration kubevirt-migrate-vm-x1 failed: no reason given"),
])
def test_outcome(obj, ok, message):
    outcome = compute_outcome(obj, 12.5)
    if ok is None:
        assert outcome is None
    else:
        assert (outcome.ok, outcome.message) == (ok, message)


def test_follow_steps_print_each_phase_once_and_each_new_sample():
    state = FollowState()
    step = compute_follow_step(state, vmim(""), 0.01)
    assert step.phase_lines == (compute_phase_line("", 0.01),) and step.phase_lines[0].split() == ["Created", "+0.0s"]
    step = compute_follow_step(step.state, vmim("Pending"), 0.2)
    assert step.phase_lines == ("  Pending              +0.2s",) and step.detail is None and step.bar is None
    sample = {"progress": {"dataProcessedBytes": MiB, "dataRemainingBytes": MiB}}
    step = compute_follow_step(step.state, vmim("Running", sample), 1.0)
    assert [line.split()[0] for line in step.phase_lines] == ["Running"]
    assert step.detail == "1.0 MiB transferred, 1.0 MiB remaining" and step.bar == (MiB, 2 * MiB)
    again = compute_follow_step(step.state, vmim("Running", sample), 1.5)
    assert again.phase_lines == () and again.detail is None and again.bar == (MiB, 2 * MiB)
    done = compute_follow_step(again.state, vmim("Succeeded", {}), 2.0)
    assert done.phase_lines == ("  Succeeded            +2.0s",) and done.detail is None


def test_parse_node_selector():
    assert parse_node_selector(None) == {}
    assert parse_node_selector("zone=b, kubernetes.io/hostname=node-2,") == {
        "zone": "b", "kubernetes.io/hostname": "node-2"}
    with pytest.raises(click.BadParameter):
        parse_node_selector("zone")


def test_the_new_migration_is_the_newest_not_listed_before():
    def item(uid, created, name):
        return {"metadata": {"uid": uid, "creationTimestamp": created, "name": name}}
    items = [item("a", "2026-01-01T00:00:00Z", "m-a"), item("b", "2026-01-01T00:00:05Z", "m-b"),
             item("c", "2026-01-01T00:00:03Z", "m-c")]
    assert compute_new_migration({"a"}, items)["metadata"]["uid"] == "b"
    assert compute_new_migration({"a", "b", "c"}, items) is None
