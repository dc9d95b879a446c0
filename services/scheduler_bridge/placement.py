"""Placement of one VMI on one node: the pure decision of scheduler-bridge.

Given a VMI, the registered Nodes and what is already placed on each node,
``plan_placement`` returns the chosen node or, when none fits, the message the
Kubernetes scheduler would write on the pod's ``PodScheduled`` condition
(``"0/2 nodes are available: 2 Insufficient memory."``). No I/O here: the
service (``service.py``) reads the store and writes the decision. VMIs and Nodes are the
:mod:`shared.api` Structs (a Node's ``spec`` and ``status`` are kept as dicts there).

Filters, in the Kubernetes scheduler's order (``pkg/scheduler/framework/plugins``):
``NodeUnschedulable`` (``spec.unschedulable``), ``TaintToleration`` (effects
NoSchedule/NoExecute; a node not Ready carries ``node.kubernetes.io/not-ready``,
a node whose heartbeat is stale ``node.kubernetes.io/unreachable``),
``NodeAffinity`` (``nodeSelector``, the ``kubevirt.io/schedulable=true`` selector
KubeVirt puts on every launcher pod, required node affinity), ``NodeResourcesFit``
(CPU and memory requests against allocatable minus placed). Among nodes that
pass, the least allocated one wins (``LeastAllocated`` score), ties by name.

What depends only on the node (its allocatable resources, effective taints, labels) is
computed once per scheduling round (:func:`compute_node_facts`) and reused for every VMI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.scheduler_bridge.resource_requests import (
    NO_REQUESTS,
    Requests,
    compute_vmi_requests,
)
from shared.api.core import Toleration
from shared.api.node import Node
from shared.api.quantity import to_bytes, to_millicores
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import is_final_phase, parse_time

SCHEDULABLE_LABEL = "kubevirt.io/schedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
# Kubernetes' node-monitor-grace-period: a node silent for longer counts as unreachable.
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=40)

REASON_UNSCHEDULABLE_NODE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_INSUFFICIENT_CPU = "Insufficient cpu"
REASON_INSUFFICIENT_MEMORY = "Insufficient memory"

Taint = dict[str, Any]
"""A core/v1 taint as a Node carries it: ``{key, value?, effect}``."""


@dataclass(frozen=True)
class PlacementDecision:
    """Outcome of ``plan_placement``.

    ``node_name`` is the chosen node, or None when the VMI fits nowhere; then
    ``message`` is the scheduler's FitError text. ``node_reasons`` maps each rejected
    node to the reasons it failed (for logs and tests).
    """

    node_name: str | None
    message: str
    node_reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_placed(self) -> bool:
        """Whether a node was chosen."""
        return self.node_name is not None


@dataclass(frozen=True)
class NodeFacts:
    """What placement reads of one Node, computed once per round by :func:`compute_node_facts`:
    ``name``, ``labels``, ``unschedulable`` (``spec.unschedulable``), ``taints`` (effective,
    see :func:`compute_effective_taints`) and ``allocatable`` requests."""

    name: str
    labels: Mapping[str, str]
    unschedulable: bool
    taints: tuple[Taint, ...]
    allocatable: Requests


def holds_node(vmi: VirtualMachineInstance) -> str | None:
    """The node whose resources the VMI uses: ``status.nodeName`` while the phase is not final,
    else None."""
    status = vmi.status
    if status is None or not status.node_name or is_final_phase(status.phase):
        return None
    return status.node_name


def compute_placed_totals(vmis: Iterable[VirtualMachineInstance]) -> dict[str, Requests]:
    """Sum the requests of VMIs that hold a node (:func:`holds_node`), per node."""
    totals: dict[str, Requests] = {}
    for vmi in vmis:
        node = holds_node(vmi)
        if node is not None:
            totals[node] = totals.get(node, NO_REQUESTS) + compute_vmi_requests(vmi)
    return totals


def _name(node: Node) -> str:
    return (node.metadata.name if node.metadata else None) or ""


def compute_allocatable(node: Node) -> Requests:
    """A Node's allocatable CPU (millicores) and memory (bytes); capacity when allocatable is absent.
    Raises ``BadRequest`` for an unparsable quantity."""
    status = node.status or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    return Requests(cpu_millicores=to_millicores(allocatable.get("cpu", 0)),
                    memory_bytes=to_bytes(allocatable.get("memory", 0)))


def _heartbeat(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError, AttributeError):
        return None


def compute_effective_taints(node: Node, now: datetime | None,
                             heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT) -> list[Taint]:
    """``spec.taints`` plus the taints Kubernetes' node lifecycle controller would add.

    Ready condition not True -> ``node.kubernetes.io/not-ready:NoSchedule``; with ``now`` given,
    a ``lastHeartbeatTime`` older than ``heartbeat_timeout`` -> ``node.kubernetes.io/unreachable:NoSchedule``.
    """
    taints: list[Taint] = list((node.spec or {}).get("taints") or [])
    keys = {t.get("key") for t in taints}
    conditions = (node.status or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        if NOT_READY_TAINT not in keys:
            taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    elif now is not None:
        beat = _heartbeat(ready.get("lastHeartbeatTime"))
        if (beat is None or now - beat > heartbeat_timeout) and UNREACHABLE_TAINT not in keys:
            taints.append({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"})
    return taints


def compute_node_facts(node: Node, now: datetime | None,
                       heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT) -> NodeFacts:
    """The :class:`NodeFacts` of ``node`` at ``now``. Raises ``BadRequest`` for an unparsable
    allocatable quantity."""
    return NodeFacts(
        name=_name(node),
        labels=(node.metadata.labels if node.metadata else None) or {},
        unschedulable=bool((node.spec or {}).get("unschedulable")),
        taints=tuple(compute_effective_taints(node, now, heartbeat_timeout)),
        allocatable=compute_allocatable(node),
    )


def is_taint_tolerated(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (core/v1 ``Toleration.ToleratesTaint``).

    Empty toleration effect matches every effect; operator ``Exists`` with an empty key matches
    every taint; operator ``Equal`` (the default) also compares values.
    """
    for toleration in tolerations:
        effect = toleration.effect or ""
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.key or ""
        operator = toleration.operator or "Equal"
        if key and key != taint.get("key"):
            continue
        if operator == "Exists":
            return True
        if operator == "Equal" and key and (toleration.value or "") == (taint.get("value") or ""):
            return True
    return False


def _match_expression(expression: Mapping[str, Any], values_of: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = expression.get("values") or []
    present = key in values_of
    actual = values_of.get(key)
    if operator == "In":
        return present and actual in values
    if operator == "NotIn":
        return not present or actual not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            left, right = int(str(actual)), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def is_node_selector_term_matched(term: Mapping[str, Any], node: NodeFacts) -> bool:
    """One ``NodeSelectorTerm``: all ``matchExpressions`` on labels and ``matchFields`` on
    ``metadata.name`` must hold (an empty term matches nothing, as in Kubernetes)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    node_fields = {"metadata.name": node.name}
    return (all(_match_expression(e, node.labels) for e in expressions)
            and all(_match_expression(f, node_fields) for f in fields))


def is_node_affinity_matched(vmi: VirtualMachineInstance, node: NodeFacts) -> bool:
    """``spec.nodeSelector`` (plus KubeVirt's ``kubevirt.io/schedulable=true``) and
    ``spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`` (terms ORed)."""
    spec = vmi.spec
    labels = node.labels
    if spec.node_selector:
        selector = {SCHEDULABLE_LABEL: "true", **spec.node_selector}
        if any(labels.get(k) != v for k, v in selector.items()):
            return False
    elif labels.get(SCHEDULABLE_LABEL) != "true":
        return False
    required = ((spec.affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required:
        terms = required.get("nodeSelectorTerms") or []
        return any(is_node_selector_term_matched(t, node) for t in terms)
    return True


def compute_node_reasons(vmi: VirtualMachineInstance, node: NodeFacts, request: Requests,
                         placed: Requests) -> tuple[str, ...]:
    """Why ``vmi`` cannot go to ``node`` (empty tuple: it fits).

    Like the Kubernetes scheduler, the first failing filter ends the check, except the
    resource filter which reports every insufficient resource.
    """
    if node.unschedulable:
        return (REASON_UNSCHEDULABLE_NODE,)
    tolerations = vmi.spec.tolerations or ()
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not is_taint_tolerated(taint, tolerations):
            return (f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",)
    if not is_node_affinity_matched(vmi, node):
        return (REASON_AFFINITY,)
    allocatable = node.allocatable
    reasons = []
    if request.cpu_millicores > allocatable.cpu_millicores - placed.cpu_millicores:
        reasons.append(REASON_INSUFFICIENT_CPU)
    if request.memory_bytes > allocatable.memory_bytes - placed.memory_bytes:
        reasons.append(REASON_INSUFFICIENT_MEMORY)
    return tuple(reasons)


def compute_fit_error_message(node_count: int, node_reasons: Mapping[str, tuple[str, ...]]) -> str:
    """The scheduler's FitError text: ``"0/<n> nodes are available: <count> <reason>, ...."``,
    reasons sorted as the Kubernetes scheduler sorts them (``framework.FitError.Error``)."""
    if node_count == 0:
        return "no nodes available to schedule pods"
    histogram = Counter(reason for reasons in node_reasons.values() for reason in reasons)
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    return f"0/{node_count} nodes are available: {', '.join(parts)}."


def _least_allocated_score(allocatable: Requests, used: Requests) -> float:
    scores = []
    for capacity, taken in ((allocatable.cpu_millicores, used.cpu_millicores),
                            (allocatable.memory_bytes, used.memory_bytes)):
        scores.append(0.0 if capacity <= 0 else (capacity - taken) / capacity)
    return sum(scores) / len(scores)


def plan_placement_on(vmi: VirtualMachineInstance, nodes: Sequence[NodeFacts], placed: Mapping[str, Requests],
                      request: Requests | None = None) -> PlacementDecision:
    """Choose a node for ``vmi`` among ``nodes`` (facts of one round); ``request`` is the VMI's
    (computed when None). See :func:`plan_placement`."""
    if request is None:
        request = compute_vmi_requests(vmi)
    rejected: dict[str, tuple[str, ...]] = {}
    best: tuple[float, str] | None = None
    for node in nodes:
        used = placed.get(node.name, NO_REQUESTS)
        reasons = compute_node_reasons(vmi, node, request, used)
        if reasons:
            rejected[node.name] = reasons
            continue
        score = _least_allocated_score(node.allocatable, used + request)
        if best is None or score > best[0] or (score == best[0] and node.name < best[1]):
            best = (score, node.name)
    if best is None:
        return PlacementDecision(None, compute_fit_error_message(len(nodes), rejected), rejected)
    return PlacementDecision(best[1], f"placed on {best[1]}", rejected)


def plan_placement(vmi: VirtualMachineInstance, nodes: Iterable[Node], placed: Mapping[str, Requests], *,
                   now: datetime | None = None,
                   heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT) -> PlacementDecision:
    """Choose a node for ``vmi``.

    ``nodes``: the Nodes; ``placed``: node name -> sum of requests of VMIs already there (see
    ``compute_placed_totals``); ``now``: current UTC time, enables the stale heartbeat check.
    Raises ``shared.errors.BadRequest`` for unparsable quantities in the VMI or a Node.
    """
    facts = [compute_node_facts(node, now, heartbeat_timeout) for node in nodes]
    return plan_placement_on(vmi, facts, placed)
