"""Crash-loop backoff exactly as KubeVirt computes it, on a fake clock."""
from datetime import datetime, timedelta, timezone

import pytest

from controller_objects import as_dict, start_failure, vmi as typed_vmi

from services.virt_controller.backoff import (
    compute_backoff_time_left,
    compute_start_backoff_seconds,
    compute_start_failure,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def no_jitter(n: int) -> int:
    assert n >= 1
    return 0


def max_jitter(n: int) -> int:
    return n - 1


@pytest.mark.parametrize(
    ("count", "jitter", "expected"),
    [
        pytest.param(0, no_jitter, 10, id="zero-counts-as-one"),
        pytest.param(1, no_jitter, 10, id="first-failure-10s"),
        pytest.param(1, max_jitter, 15, id="first-failure-plus-half"),
        pytest.param(2, no_jitter, 40, id="second-failure-40s"),
        pytest.param(3, no_jitter, 90, id="third-failure-90s"),
        pytest.param(3, max_jitter, 135, id="third-failure-max-jitter"),
        pytest.param(5, no_jitter, 250, id="fifth-failure-250s"),
        pytest.param(6, no_jitter, 300, id="capped-at-300s"),
        pytest.param(5, max_jitter, 300, id="jitter-also-capped"),
    ],
)
def test_start_backoff_seconds_follow_kubevirts_formula(count, jitter, expected):
    assert compute_start_backoff_seconds(count, jitter=jitter) == expected


def test_larger_max_delay_raises_the_interval():
    # interval = max(10, 900 // 30) = 30 s
    assert compute_start_backoff_seconds(2, 900, jitter=no_jitter) == 120


def vmi(uid, phase, ever_running=False):
    stamps = [{"phase": "Scheduling", "phaseTransitionTimestamp": "t"}]
    if ever_running:
        stamps.append({"phase": "Running", "phaseTransitionTimestamp": "t"})
    return typed_vmi({"metadata": {"uid": uid}, "status": {"phase": phase, "phaseTransitionTimestamps": stamps}})


def test_an_early_failure_is_counted_once_per_vmi_uid():
    first = compute_start_failure(None, "Always", vmi("a", "Failed"), T0, jitter=no_jitter)
    assert as_dict(first) == {"consecutiveFailCount": 1, "lastFailedVMIUID": "a",
                     "retryAfterTimestamp": "2026-01-02T03:04:15Z"}
    again = compute_start_failure(first, "Always", vmi("a", "Failed"), T0 + timedelta(seconds=3),
                                  jitter=no_jitter)
    assert again is first
    second = compute_start_failure(first, "Always", vmi("b", "Failed"), T0 + timedelta(seconds=20),
                                   jitter=no_jitter)
    assert as_dict(second) == {"consecutiveFailCount": 2, "lastFailedVMIUID": "b",
                      "retryAfterTimestamp": "2026-01-02T03:05:05Z"}


@pytest.mark.parametrize(
    ("strategy", "the_vmi", "cleared"),
    [
        pytest.param("Always", vmi("a", "Running", ever_running=True), True, id="vmi-reached-running"),
        pytest.param("Always", vmi("a", "Succeeded", ever_running=True), True, id="ran-then-stopped"),
        pytest.param("Manual", vmi("a", "Failed"), True, id="manual-never-backs-off"),
        pytest.param("Halted", None, True, id="halted-clears"),
        pytest.param("Always", vmi("a", "Scheduling"), False, id="still-starting-keeps"),
        pytest.param("RerunOnFailure", None, False, id="no-vmi-keeps"),
    ],
)
def test_start_failure_is_cleared_by_running_or_by_a_non_restarting_strategy(strategy, the_vmi, cleared):
    current = start_failure({"consecutiveFailCount": 2, "lastFailedVMIUID": "x",
                             "retryAfterTimestamp": "2026-01-02T03:05:05Z"})
    result = compute_start_failure(current, strategy, the_vmi, T0, jitter=no_jitter)
    assert (result is None) is cleared
    if not cleared:
        assert result == current


@pytest.mark.parametrize(
    ("offset", "left"),
    [
        pytest.param(0, 40.0, id="at-failure"),
        pytest.param(39, 1.0, id="one-second-left"),
        pytest.param(40, 0.0, id="exactly-due"),
        pytest.param(100, 0.0, id="past-due"),
    ],
)
def test_time_left_in_backoff_on_a_fake_clock(offset, left):
    failure = start_failure({"consecutiveFailCount": 2, "retryAfterTimestamp": "2026-01-02T03:04:45Z"})
    assert compute_backoff_time_left(failure, T0 + timedelta(seconds=offset)) == left


def test_no_start_failure_means_no_wait():
    assert compute_backoff_time_left(None, T0) == 0.0
