"""When virt-handler fences itself, and when it may stop (pure).

A handler that cannot write its Node heartbeat cannot tell whether the control plane still
sees it; after ``fence_after`` seconds virt-controller may be about to declare its VMIs lost
(:mod:`shared.node_fencing`), so the handler destroys its guests first. Times are monotonic
seconds of this process; "the last beat" is the *start* of the last heartbeat write the store
acknowledged, which is never later than the moment the controller can have seen it, so the
handler's deadline is never later than the one the controller measures from that beat.

Steps:

* not fenced, fencing on (``fence_after > 0``), no acknowledged beat for ``fence_after`` -> ``FENCE``
  (destroy every guest of this handler, stop syncing);
* fenced, and a beat that started after the fence was acknowledged -> ``LIFT`` (report the
  destroyed guests' VMIs ``Failed``, resume syncing);
* fenced otherwise -> ``HOLD`` (keep every guest of this handler destroyed: a start that was in
  flight when the fence began is caught here);
* otherwise -> ``KEEP``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: the fence is checked this many times per ``fence_after`` (its lateness is one period at most)
CHECKS_PER_FENCE_AFTER = 10
#: the shortest check period, seconds
MIN_CHECK_PERIOD = 0.05


class FenceStep(StrEnum):
    """What the fence watch does now (module docstring)."""

    KEEP = "Keep"
    FENCE = "Fence"
    HOLD = "Hold"
    LIFT = "Lift"


@dataclass(frozen=True)
class FenceFacts:
    """Inputs of :func:`compute_fence_step` (monotonic seconds).

    ``fence_after``: the handler's ``--fence-after`` (0: fencing off); ``now``; ``last_beat``:
    start of the last acknowledged heartbeat write; ``fenced_at``: when the fence began (None:
    not fenced).
    """

    fence_after: float
    now: float
    last_beat: float
    fenced_at: float | None = None


def compute_fence_step(facts: FenceFacts) -> FenceStep:
    """The step for ``facts`` (rules in the module docstring)."""
    if facts.fenced_at is not None:
        return FenceStep.LIFT if facts.last_beat > facts.fenced_at else FenceStep.HOLD
    if facts.fence_after > 0 and facts.now - facts.last_beat >= facts.fence_after:
        return FenceStep.FENCE
    return FenceStep.KEEP


def compute_check_period(fence_after: float, heartbeat_interval: float) -> float:
    """Seconds between two looks at the fence: a tenth of ``fence_after``, at most one heartbeat
    interval, at least :data:`MIN_CHECK_PERIOD`."""
    if fence_after <= 0:
        return max(heartbeat_interval, MIN_CHECK_PERIOD)
    return max(min(fence_after / CHECKS_PER_FENCE_AFTER, heartbeat_interval), MIN_CHECK_PERIOD)
