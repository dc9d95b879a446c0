"""How virt-controller judges a node from its Node object: responsive, unresponsive or lost (pure).

Our reading of KubeVirt's node controller (``pkg/virt-controller/watch/node/node.go``): a node
whose ``kubevirt.io/heartbeat`` is older than the heartbeat timeout is unresponsive, and its VMIs
are moved to ``Failed`` with reason ``NodeUnresponsive`` once nothing of theirs can still run
there (KubeVirt: their virt-launcher pods are no longer alive). Without pods, "nothing can still
run there" is the self-fencing contract of :mod:`shared.node_fencing`:

* ``RESPONSIVE``: the last heartbeat is recent (at most the node's ``fence_after`` seconds old when
  it fences, else at most ``heartbeat_timeout``) and its ``Ready`` condition is not False/Unknown;
* ``UNRESPONSIVE``: silent (or not Ready); its guests may still run, so its VMIs only report it
  (phase ``Unknown``, ``Ready=False/NodeUnresponsive``) and no replacement is started;
* ``LOST``: silent for longer than ``heartbeat_timeout`` while advertising a ``fence_after`` with
  ``fence_after + margin <= heartbeat_timeout`` (its handler has destroyed its guests by then, or
  the host is down), or the Node object is gone (the administrator's word that the host is, as
  Kubernetes' pod garbage collector treats the pods of a deleted Node). Its VMIs become ``Failed``.

A node that does not fence (no annotation, or a ``fence_after`` too long for this controller's
timeout) is never ``LOST`` by silence alone: its VMIs stay ``Unknown`` until the handler reports
again or the Node is deleted.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.api.vocabulary import ConditionStatus, ConditionType, parse_time
from shared.node_fencing import DEFAULT_FENCE_MARGIN, DEFAULT_HEARTBEAT_TIMEOUT, read_fence_after

HEARTBEAT_ANNOTATION = "kubevirt.io/heartbeat"


class NodeHealth(StrEnum):
    """What a node's silence means for its VMIs (module docstring)."""

    RESPONSIVE = "Responsive"
    UNRESPONSIVE = "Unresponsive"
    LOST = "Lost"


def _node_ready(node: dict[str, Any]) -> dict[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ConditionType.READY:
            return dict(cond)
    return None


def compute_last_heartbeat(node: dict[str, Any] | None) -> datetime | None:
    """Latest heartbeat of a Node (a JSON-ready ``v1`` Node): ``Ready`` condition
    ``lastHeartbeatTime`` or the ``kubevirt.io/heartbeat`` annotation, whichever is newer
    (None when neither)."""
    if not node:
        return None
    stamps: list[datetime] = []
    ready = _node_ready(node)
    for text in ((ready or {}).get("lastHeartbeatTime"),
                 ((node.get("metadata") or {}).get("annotations") or {}).get(HEARTBEAT_ANNOTATION)):
        try:
            parsed = parse_time(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            stamps.append(parsed)
    return max(stamps) if stamps else None


def compute_node_health(node: dict[str, Any] | None, now: datetime, *,
                        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
                        margin: float = DEFAULT_FENCE_MARGIN) -> NodeHealth:
    """The node's health at ``now`` (rules in the module docstring).

    Args:
        node: the JSON-ready ``v1`` Node (None: it does not exist).
        now: current UTC time.
        heartbeat_timeout: seconds of silence after which a fencing node is lost.
        margin: seconds the node's ``fence_after`` must stay below ``heartbeat_timeout``.
    """
    if node is None:
        return NodeHealth.LOST
    beat = compute_last_heartbeat(node)
    age = float("inf") if beat is None else (now - beat).total_seconds()
    fence_after = read_fence_after(node)
    fences_in_time = fence_after is not None and fence_after + margin <= heartbeat_timeout
    if fences_in_time and age > heartbeat_timeout:
        return NodeHealth.LOST
    ready = _node_ready(node)
    if ready is not None and ready.get("status") != ConditionStatus.TRUE:
        return NodeHealth.UNRESPONSIVE
    silent_after = fence_after if fences_in_time and fence_after is not None else heartbeat_timeout
    return NodeHealth.UNRESPONSIVE if age > silent_after else NodeHealth.RESPONSIVE

