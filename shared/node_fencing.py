"""The timing contract between a node's self-fencing virt-handler and virt-controller (pure).

A host cut off from the store must never leave a VMI running twice. KubeVirt gets that from
Kubernetes: virt-controller's node controller (``pkg/virt-controller/watch/node/node.go``) marks
the VMIs of a node whose ``kubevirt.io/heartbeat`` is older than its timeout ``Failed`` with
reason ``NodeUnresponsive`` only once their virt-launcher pods are no longer alive, and a pod on
an unreachable node stays alive until the node is fenced. There are no pods here, so the fence is
the handler's own: a virt-handler that has not managed to write its heartbeat for
``fence_after`` seconds destroys its guests (:mod:`services.virt_handler.fencing`), and
virt-controller declares the VMIs of a silent node ``Failed`` only after ``heartbeat_timeout``
seconds, which must be at least ``fence_after + margin`` (the margin covers the destroy calls,
the check periods of both sides and clock skew between hosts).

The handler advertises its ``fence_after`` on its Node (:data:`FENCE_AFTER_ANNOTATION`), so the
controller checks the relation for every node at run time (:func:`read_fence_after`); the
installation checks it up front (:func:`compute_timing_problem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: annotation on a Node: seconds without a stored heartbeat after which its handler destroys its
#: guests; absent when the handler does not fence
FENCE_AFTER_ANNOTATION = "kubevirt-py.io/fence-after-seconds"
#: virt-controller's default ``--heartbeat-timeout`` (Kubernetes' node-monitor-grace-period is 40 s)
DEFAULT_HEARTBEAT_TIMEOUT = 40.0
#: virt-handler's default ``--heartbeat-interval``
DEFAULT_HEARTBEAT_INTERVAL = 5.0
#: virt-handler's default ``--fence-after``
DEFAULT_FENCE_AFTER = 20.0
#: virt-controller's default ``--fence-margin``
DEFAULT_FENCE_MARGIN = 10.0
#: a handler must have had this many chances to beat before it fences (one lost beat is no outage)
MIN_BEATS_BEFORE_FENCE = 2


def compute_timing_problem(*, heartbeat_interval: float | None, fence_after: float, heartbeat_timeout: float | None,
                           margin: float = DEFAULT_FENCE_MARGIN) -> str | None:
    """Why these settings cannot keep a VMI from running twice, or None when they can.

    Args:
        heartbeat_interval: the handler's seconds between heartbeats (None: not known here).
        fence_after: the handler's ``--fence-after`` seconds (0: fencing off).
        heartbeat_timeout: the controller's ``--heartbeat-timeout`` seconds (None: not known here).
        margin: the controller's ``--fence-margin`` seconds.

    Rules: ``fence_after`` is 0 or at least :data:`MIN_BEATS_BEFORE_FENCE` heartbeat intervals;
    ``heartbeat_timeout >= fence_after + margin`` when fencing is on (without fencing the
    controller never declares a node's VMIs Failed by itself, so any timeout is safe).
    """
    for name, value in (("fence-after", fence_after), ("heartbeat-timeout", heartbeat_timeout),
                        ("heartbeat-interval", heartbeat_interval), ("fence-margin", margin)):
        if value is not None and (not math.isfinite(value) or value < 0):
            return f"--{name} must be a finite number of seconds >= 0, not {value}"
    if fence_after == 0:
        return None
    if heartbeat_interval is not None and fence_after < MIN_BEATS_BEFORE_FENCE * heartbeat_interval:
        return (f"--fence-after {fence_after:g} s must be at least {MIN_BEATS_BEFORE_FENCE} heartbeat intervals "
                f"({MIN_BEATS_BEFORE_FENCE * heartbeat_interval:g} s): one late beat would destroy the node's guests")
    if heartbeat_timeout is not None and heartbeat_timeout < fence_after + margin:
        return (f"--heartbeat-timeout {heartbeat_timeout:g} s must be at least --fence-after {fence_after:g} s + "
                f"margin {margin:g} s: a cut-off node's guests could still run when their VMIs are replaced")
    return None


def read_fence_after(node: dict[str, Any] | None) -> float | None:
    """The ``fence_after`` seconds a Node (JSON-ready ``v1`` Node) advertises; None when it does not
    fence (no annotation, or a value that is not a positive finite number)."""
    text = (((node or {}).get("metadata") or {}).get("annotations") or {}).get(FENCE_AFTER_ANNOTATION)
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def format_fence_after(seconds: float) -> str:
    """The annotation's text for ``seconds`` (``"20"``, ``"1.5"``)."""
    return f"{seconds:g}"


@dataclass(frozen=True)
class FailureTiming:
    """The four settings of an installation that decide when a silent node's VMIs are replaced
    (seconds): the handlers' ``--heartbeat-interval`` and ``--fence-after``, the controllers'
    ``--heartbeat-timeout`` and ``--fence-margin``. Raises ValueError on construction when
    :func:`compute_timing_problem` finds a problem, so an installation cannot start with them."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    fence_after: float = DEFAULT_FENCE_AFTER
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    fence_margin: float = DEFAULT_FENCE_MARGIN

    def __post_init__(self) -> None:
        problem = compute_timing_problem(heartbeat_interval=self.heartbeat_interval, fence_after=self.fence_after,
                                         heartbeat_timeout=self.heartbeat_timeout, margin=self.fence_margin)
        if problem is not None:
            raise ValueError(problem)

    def handler_args(self) -> list[str]:
        """virt-handler's command-line options for these settings."""
        return ["--heartbeat-interval", f"{self.heartbeat_interval:g}", "--fence-after", f"{self.fence_after:g}"]

    def controller_args(self) -> list[str]:
        """virt-controller's command-line options for these settings."""
        return ["--heartbeat-timeout", f"{self.heartbeat_timeout:g}", "--fence-margin", f"{self.fence_margin:g}"]
