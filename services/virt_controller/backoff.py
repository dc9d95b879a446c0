"""KubeVirt's crash-loop backoff for VMs whose VMIs fail before they ever run (pure).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``calculateStartBackoffTime``,
``syncStartFailureStatus``, ``shouldClearStartFailure``, ``startFailureBackoffTimeLeft``).

* A VMI that becomes final without ever reaching Running counts once (per VMI UID) in
  ``status.startFailure.consecutiveFailCount``.
* delay = max(10, maxDelay // 30) * count**2 + random(0 .. delay // 2), capped at maxDelay
  (300 s by default); ``retryAfterTimestamp`` = now + delay.
* ``startFailure`` is cleared when a VMI reaches Running or when the run strategy is not one of
  Always, RerunOnFailure, Once.

The random part is passed in (``jitter(n)`` returns an int in ``[0, n)``) so tests are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from services.virt_controller import phases
from shared.api.vm import VirtualMachineStartFailure
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import RunStrategy, format_time, parse_time

DEFAULT_MAX_CRASH_LOOP_BACKOFF_SECONDS = 300
MIN_INTERVAL_SECONDS = 10
BACKOFF_RUN_STRATEGIES: frozenset[str] = frozenset({RunStrategy.ALWAYS, RunStrategy.RERUN_ON_FAILURE,
                                                    RunStrategy.ONCE})

Jitter = Callable[[int], int]


def compute_start_backoff_seconds(fail_count: int,
                                  max_delay: int = DEFAULT_MAX_CRASH_LOOP_BACKOFF_SECONDS,
                                  *, jitter: Jitter = random.randrange) -> int:
    """Seconds to wait before the next start after ``fail_count`` consecutive start failures.

    ``fail_count`` <= 0 is treated as 1. Result is in ``[interval*count², min(max, 1.5×that)]``.
    """
    count = max(fail_count, 1)
    interval = max(MIN_INTERVAL_SECONDS, max_delay // 30)
    delay = interval * count * count
    delay += jitter(delay // 2 + 1)
    return min(delay, max_delay)


def is_start_failure_cleared(run_strategy: str, vmi: VirtualMachineInstance | None) -> bool:
    """True when ``status.startFailure`` must be removed (VMI ran, or no auto-restart strategy)."""
    return phases.was_running(vmi) or run_strategy not in BACKOFF_RUN_STRATEGIES


def compute_start_failure(current: VirtualMachineStartFailure | None, run_strategy: str,
                          vmi: VirtualMachineInstance | None, now: datetime, *,
                          max_delay: int = DEFAULT_MAX_CRASH_LOOP_BACKOFF_SECONDS,
                          jitter: Jitter = random.randrange) -> VirtualMachineStartFailure | None:
    """The VM's new ``status.startFailure`` given the current one and the VMI.

    Returns ``None`` to clear it, ``current`` unchanged when there is nothing new, or a new one
    ``{consecutiveFailCount, lastFailedVMIUID, retryAfterTimestamp}``.
    """
    if is_start_failure_cleared(run_strategy, vmi):
        return None
    if vmi is None or not phases.failed_early(vmi):
        return current
    uid = vmi.metadata.uid if vmi.metadata is not None else None
    if current is not None and current.last_failed_vmi_uid == uid:
        return current
    count = int((current.consecutive_fail_count if current is not None else None) or 0) + 1
    delay = compute_start_backoff_seconds(count, max_delay, jitter=jitter)
    return VirtualMachineStartFailure(
        consecutive_fail_count=count,
        last_failed_vmi_uid=uid,
        retry_after_timestamp=format_time(now + timedelta(seconds=delay)),
    )


def compute_backoff_time_left(start_failure: VirtualMachineStartFailure | None, now: datetime) -> float:
    """Seconds until ``retryAfterTimestamp`` (0 when there is no backoff or it has passed)."""
    retry_after = parse_time(start_failure.retry_after_timestamp if start_failure is not None else None)
    if retry_after is None:
        return 0.0
    return max(0.0, (retry_after - now).total_seconds())
