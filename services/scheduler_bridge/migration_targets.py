"""Where a live migration goes: the pure target decision of scheduler-bridge for VMIMs.

KubeVirt creates a target virt-launcher pod for a VMIM in phase ``Scheduling`` and lets the
Kubernetes scheduler place it (``pkg/virt-controller/watch/migration/migration.go``
``createTargetPod``): the VMI's own placement rules, the VMIM's ``spec.addedNodeSelector`` merged
*under* the VMI's nodeSelector (``maps.Copy(added)`` then ``maps.Copy(vmi's)``: on a shared key the
VMI's value wins, so the added selector can only narrow), and a required pod anti-affinity on
``kubernetes.io/hostname`` against the VMI's own pods, so the source node is never chosen. Here there
is no pod: the decision writes ``status.migrationState.targetNode``/``sourceNode`` on the VMIM
(see ``migration-design.md``), and the VMI's requests stay reserved on the target while the VMIM
is not final (:class:`~services.scheduler_bridge.accounting.PlacementBook`).

The filters and the score are :mod:`services.scheduler_bridge.placement`'s; the source node is
rejected with the scheduler's ``InterPodAffinity`` reason (after the filters that run before it),
so an unschedulable message reads like kube-scheduler's for the target pod, e.g.
``"0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match pod anti-affinity rules."``.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from services.scheduler_bridge.placement import (
    NodeFacts,
    compute_fit_error_message,
    compute_node_reasons,
    plan_placement_on,
)
from services.scheduler_bridge.resource_requests import NO_REQUESTS, Requests
from shared.api.migration import (
    MigrationState,
    VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationStatus,
)
from shared.api.migration_vocabulary import MigrationPhase, is_final_migration_phase
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import is_final_phase

REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
"""kube-scheduler's InterPodAffinity filter reason (``ErrReasonAntiAffinityRulesNotMatch``)."""

_replace = msgspec.structs.replace


@dataclass(frozen=True)
class TargetDecision:
    """Outcome of :func:`plan_migration_target`.

    ``target_node`` is the chosen node (None: none fits, then ``message`` is the scheduler's
    FitError text for the event); ``source_node`` the VMI's current node; ``node_reasons`` why
    each rejected node was rejected."""

    target_node: str | None
    source_node: str
    message: str
    node_reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def vmi_key_of(vmim: VirtualMachineInstanceMigration) -> str:
    """``namespace/vmiName`` of the VMI the VMIM moves (the VMI lives in the VMIM's namespace)."""
    meta = vmim.metadata
    return f"{(meta.namespace if meta else None) or ''}/{vmim.spec.vmi_name or ''}"


def target_of(vmim: VirtualMachineInstanceMigration) -> str | None:
    """``status.migrationState.targetNode``, or None."""
    state = vmim.status.migration_state if vmim.status is not None else None
    return (state.target_node if state is not None else None) or None


def is_awaiting_target(vmim: VirtualMachineInstanceMigration) -> bool:
    """Phase ``Scheduling``, no target node yet and not being deleted (a deleted VMIM is a cancel:
    virt-migration fails it)."""
    status = vmim.status
    return (status is not None and status.phase == MigrationPhase.SCHEDULING and target_of(vmim) is None
            and not (vmim.metadata is not None and vmim.metadata.deletion_timestamp))


def reserved_target(vmim: VirtualMachineInstanceMigration) -> str | None:
    """The node on which the VMIM reserves its VMI's requests: its target node while not final."""
    phase = vmim.status.phase if vmim.status is not None else None
    return None if is_final_migration_phase(phase) else target_of(vmim)


def compute_migration_node_selector(vmi: VirtualMachineInstance,
                                    vmim: VirtualMachineInstanceMigration) -> dict[str, str]:
    """The target's nodeSelector: ``spec.addedNodeSelector`` overlaid by the VMI's nodeSelector."""
    return {**(vmim.spec.added_node_selector or {}), **(vmi.spec.node_selector or {})}


def source_of(vmi: VirtualMachineInstance | None) -> str | None:
    """The node a VMI can be migrated from: its ``status.nodeName`` while it is not final."""
    status = vmi.status if vmi is not None else None
    if status is None or not status.node_name or is_final_phase(status.phase):
        return None
    return status.node_name


def plan_migration_target(vmim: VirtualMachineInstanceMigration, vmi: VirtualMachineInstance,
                          nodes: Sequence[NodeFacts], placed: Mapping[str, Requests],
                          request: Requests) -> TargetDecision | None:
    """Choose the target node for ``vmim`` moving ``vmi`` (running, see :func:`source_of`; None
    when it is not, then there is nothing to decide). ``nodes``: every Node's facts this round;
    ``placed``: requests per node counted so far (VMIs and reservations); ``request``: the VMI's."""
    source = source_of(vmi)
    if source is None:
        return None
    view = _replace(vmi, spec=_replace(vmi.spec, node_selector=compute_migration_node_selector(vmi, vmim) or None))
    candidates = [node for node in nodes if node.name != source]
    decision = plan_placement_on(view, candidates, placed, request)
    if decision.node_name is not None:
        return TargetDecision(decision.node_name, source, decision.message, decision.node_reasons)
    reasons = dict(decision.node_reasons)
    source_facts = next((node for node in nodes if node.name == source), None)
    if source_facts is not None:
        reasons[source] = compute_node_reasons(view, source_facts, request, placed.get(source, NO_REQUESTS)) \
            or (REASON_ANTI_AFFINITY,)
    return TargetDecision(None, source, compute_fit_error_message(len(nodes), reasons), reasons)


def compute_status_with_target(vmim: VirtualMachineInstanceMigration, target_node: str,
                               source_node: str) -> VirtualMachineInstanceMigrationStatus:
    """The VMIM status after the decision: ``migrationState.targetNode``/``sourceNode`` set, every
    other status field as it was (the input is not modified)."""
    status = vmim.status or VirtualMachineInstanceMigrationStatus()
    state = status.migration_state or MigrationState()
    return _replace(status, migration_state=_replace(state, target_node=target_node, source_node=source_node))
