"""When a handler fences itself and when it lifts the fence (pure, monotonic seconds)."""
import pytest

from services.virt_handler.fencing_decision import FenceFacts, FenceStep, compute_check_period, compute_fence_step


@pytest.mark.parametrize(
    ("facts", "step"),
    [
        pytest.param(FenceFacts(fence_after=20, now=119.9, last_beat=100), FenceStep.KEEP, id="just-before"),
        pytest.param(FenceFacts(fence_after=20, now=120, last_beat=100), FenceStep.FENCE, id="at-fence-after"),
        pytest.param(FenceFacts(fence_after=0, now=10_000, last_beat=100), FenceStep.KEEP, id="fencing-off"),
        pytest.param(FenceFacts(fence_after=20, now=130, last_beat=100, fenced_at=120), FenceStep.HOLD,
                     id="fenced-still-cut-off"),
        pytest.param(FenceFacts(fence_after=20, now=130, last_beat=120, fenced_at=120), FenceStep.HOLD,
                     id="beat-started-at-the-fence-is-not-after-it"),
        pytest.param(FenceFacts(fence_after=20, now=130, last_beat=125, fenced_at=120), FenceStep.LIFT,
                     id="beat-after-the-fence-lifts"),
    ],
)
def test_fence_steps(facts, step):
    assert compute_fence_step(facts) == step


@pytest.mark.parametrize(
    ("fence_after", "interval", "period"),
    [(20, 5, 2), (20, 1, 1), (1, 0.2, 0.1), (0.1, 0.05, 0.05), (0, 5, 5)],
)
def test_check_period(fence_after, interval, period):
    assert compute_check_period(fence_after, interval) == pytest.approx(period)
