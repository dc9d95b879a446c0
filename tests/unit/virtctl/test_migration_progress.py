"""What ``virtctl migrate --wait`` prints (pure functions of the VMIM) and its argument parsing."""

from datetime import datetime, timedelta, timezone

import click
import pytest

from services.virtctl.migrate_command import compute_new_migration, parse_node_selector
from services.virtctl.migration_progress import (
    FollowState,
    compute_bar,
    compute_follow_step,
    compute_outcome,
    compute_progress_detail,
    compute_total_seconds,
    format_bytes,
    format_rate,
    format_seconds,
)
from shared.api.vocabulary import format_micro_time

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
    # block migration: the disk copy first (no memory iteration yet), then memory and disks together
    ({"dataProcessedBytes": 4 * MiB, "dataTotalBytes": 4 * MiB + 2048, "dataRemainingBytes": 2048,
      "diskProcessedBytes": 4 * MiB, "diskTotalBytes": 4 * MiB + 2048, "diskRemainingBytes": 2048},
     "copying disks, 4.0 MiB of 4.0 MiB transferred, 2.0 KiB remaining"),
    ({"dataProcessedBytes": 50 * MiB, "dataTotalBytes": 265 * MiB, "dataRemainingBytes": 84 * MiB,
      "memoryIteration": 2, "diskTotalBytes": 4 * MiB, "diskProcessedBytes": 4 * MiB},
     "memory and disks, 50.0 MiB of 265.0 MiB transferred, 84.0 MiB remaining, iteration 2"),
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


CREATED = "2026-03-01T10:00:00Z"
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone.utc)


def followed(phase, stamps=(), state=None):
    """A VMIM created at CREATED, in ``phase``, with ``stamps``: (phase, seconds after creation)."""
    obj = vmim(phase, state)
    obj["metadata"]["creationTimestamp"] = CREATED
    obj["status"]["phaseTransitionTimestamps"] = [
        {"phase": p, "phaseTransitionTimestamp": format_micro_time(T0 + timedelta(seconds=t))} for p, t in stamps]
    return obj


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def test_the_unset_phase_prints_no_line():
    step = compute_follow_step(FollowState(), followed(""), at(0.01))
    assert step.phase_lines == () and step.detail is None


def test_phases_passed_before_the_first_look_are_listed_with_their_times_since_creation():
    stamps = [("Pending", 0.1), ("Scheduling", 0.2), ("Scheduled", 0.4), ("PreparingTarget", 0.5)]
    step = compute_follow_step(FollowState(), followed("PreparingTarget", stamps), at(7.0))
    assert step.phase_lines == ("  Pending              +0.1s", "  Scheduling           +0.2s",
                                "  Scheduled            +0.4s", "  PreparingTarget      +0.5s")
    again = compute_follow_step(step.state, followed("TargetReady", [*stamps, ("TargetReady", 1.3)]), at(8.0))
    assert again.phase_lines == ("  TargetReady          +1.3s",)


def test_a_phase_without_its_timestamp_yet_counts_from_creation_to_now():
    step = compute_follow_step(FollowState(), followed("Pending"), at(2.5))
    assert step.phase_lines == ("  Pending              +2.5s",)
    assert compute_follow_step(step.state, followed("Pending", [("Pending", 0.1)]), at(3.0)).phase_lines == ()


def test_progress_comes_after_its_phase_and_never_after_the_end():
    stamps = [("Pending", 0.1), ("Running", 1.5)]
    sample = {"progress": {"dataProcessedBytes": MiB, "dataRemainingBytes": MiB}}
    step = compute_follow_step(FollowState(), followed("Running", stamps, sample), at(2.0))
    assert [line.split()[0] for line in step.phase_lines] == ["Pending", "Running"]
    assert step.detail == "1.0 MiB transferred, 1.0 MiB remaining" and step.bar == (MiB, 2 * MiB)
    again = compute_follow_step(step.state, followed("Running", stamps, sample), at(2.5))
    assert again.phase_lines == () and again.detail is None and again.bar == (MiB, 2 * MiB)
    last = {"progress": {"dataProcessedBytes": 2 * MiB, "dataRemainingBytes": 0, "downtimeMs": 30}}
    done = compute_follow_step(again.state, followed("Succeeded", [*stamps, ("Succeeded", 4.9)], last), at(9.0))
    assert done.phase_lines == ("  Succeeded            +4.9s",) and done.detail is None and done.bar is None


def test_total_counts_from_creation_to_the_final_phase():
    final = followed("Succeeded", [("Pending", 0.1), ("Succeeded", 4.9)])
    assert compute_total_seconds(final, at(60)) == pytest.approx(4.9)
    assert compute_total_seconds(followed("Failed"), at(12.5)) == pytest.approx(12.5)


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
