"""The timing contract of self-fencing: which settings can keep a VMI from running twice (pure)."""
import pytest

from services.virtctl.service_specs import FAILURE_TIMING
from shared.node_fencing import FailureTiming, compute_timing_problem, format_fence_after, read_fence_after


@pytest.mark.parametrize(
    ("interval", "fence_after", "timeout", "margin", "problem"),
    [
        pytest.param(5, 20, 40, 10, None, id="defaults"),
        pytest.param(5, 30, 40, 10, None, id="timeout-equals-fence-plus-margin"),
        pytest.param(5, 31, 40, 10, "--heartbeat-timeout 40 s must be at least --fence-after 31 s + margin 10 s",
                     id="timeout-too-short"),
        pytest.param(5, 9, None, 10, "--fence-after 9 s must be at least 2 heartbeat intervals (10 s)",
                     id="fence-within-two-beats"),
        pytest.param(5, 0, 1, 10, None, id="fencing-off-any-timeout"),
        pytest.param(None, 20, None, 10, None, id="nothing-else-known"),
        pytest.param(5, -1, 40, 10, "--fence-after must be a finite number of seconds >= 0, not -1",
                     id="negative"),
        pytest.param(5, float("nan"), 40, 10, "--fence-after must be a finite number of seconds >= 0, not nan",
                     id="nan"),
    ],
)
def test_timing_problems(interval, fence_after, timeout, margin, problem):
    found = compute_timing_problem(heartbeat_interval=interval, fence_after=fence_after, heartbeat_timeout=timeout,
                                   margin=margin)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_failure_timing_refuses_an_unsafe_installation():
    with pytest.raises(ValueError, match="--heartbeat-timeout 25 s must be at least --fence-after 20 s"):
        FailureTiming(heartbeat_timeout=25)


def test_the_installation_passes_both_sides_the_same_safe_timing():
    assert FAILURE_TIMING.handler_args() == ["--heartbeat-interval", "5", "--fence-after", "20"]
    assert FAILURE_TIMING.controller_args() == ["--heartbeat-timeout", "40", "--fence-margin", "10"]


@pytest.mark.parametrize(
    ("annotations", "seconds"),
    [
        pytest.param({"kubevirt-py.io/fence-after-seconds": "20"}, 20.0, id="set"),
        pytest.param({"kubevirt-py.io/fence-after-seconds": format_fence_after(1.5)}, 1.5, id="fraction"),
        pytest.param({}, None, id="absent"),
        pytest.param({"kubevirt-py.io/fence-after-seconds": "inf"}, None, id="infinite"),
        pytest.param({"kubevirt-py.io/fence-after-seconds": "0"}, None, id="zero-is-off"),
    ],
)
def test_read_fence_after(annotations, seconds):
    assert read_fence_after({"metadata": {"annotations": annotations}}) == seconds
