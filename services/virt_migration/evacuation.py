"""Node evacuation (pure): which VMIs of a drained node get ``evacuationNodeName`` and a VMIM.

KubeVirt's evacuation controller (``pkg/virt-controller/watch/drain/evacuation``) and
``pkg/util/migrations`` (``VMIEvictionStrategy``, ``VMIMigratableOnEviction``), on this
project's rules (migration-design.md "Evacuation"):

- a node is drained when one of its ``spec.taints`` has the key ``nodeDrainTaintKey`` (any
  effect);
- a VMI's eviction strategy is its ``spec.evictionStrategy``, else the cluster's
  ``spec.configuration.evictionStrategy``;
- ``LiveMigrate``: migrated when ``LiveMigratable`` is True, else reported (Warning Event and
  ``kubevirt_vmi_non_evictable``); ``LiveMigrateIfPossible``: migrated when migratable, else
  left alone; ``External``: only ``evacuationNodeName`` is set (someone else moves it); ``None``
  or unset: left alone;
- a VMI being deleted, not Running, or with a non-final VMIM is not given another; the limits
  pace the VMIMs created (they wait in Pending), and failed evacuations back off
  (:func:`services.virt_migration.siblings.compute_backoff_until`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.api.migration import VirtualMachineInstanceMigration, VirtualMachineInstanceMigrationSpec
from shared.api.meta import ObjectMeta
from shared.api.migration_vocabulary import (
    EVACUATION_ANNOTATION,
    MIGRATION_FINALIZER,
    VMI_NAME_LABEL,
    EvictionStrategy,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import ConditionStatus, ConditionType, Phase

EVACUATION_GENERATE_NAME = "kubevirt-evacuation-"
#: KubeVirt's ``PrioritySystemCritical`` for evacuation VMIMs.
PRIORITY_SYSTEM_CRITICAL = "system-critical"
#: Our Event reason for a VMI that should leave a drained node but cannot migrate.
NOT_EVICTABLE_REASON = "EvictionBlocked"
#: KubeVirt's eviction webhook message for such a VMI (pod-eviction-admitter.go).
NOT_EVICTABLE_MESSAGE = "VMI {vmi} is configured with an eviction strategy but is not live-migratable"


def is_drained(node: Mapping[str, Any] | None, taint_key: str) -> bool:
    """Whether ``node`` (a Node dict) carries a taint with key ``taint_key``."""
    taints = ((node or {}).get("spec") or {}).get("taints") or []
    return any(isinstance(t, dict) and t.get("key") == taint_key for t in taints)


def eviction_strategy_of(vmi: VirtualMachineInstance, cluster_strategy: str | None) -> str | None:
    """The VMI's ``spec.evictionStrategy``, else the cluster's (None: no strategy)."""
    return vmi.spec.eviction_strategy or cluster_strategy


def is_migratable(vmi: VirtualMachineInstance) -> bool:
    """Whether the VMI's ``LiveMigratable`` condition is True."""
    conditions = vmi.status.conditions if vmi.status is not None else None
    return any(c.type == ConditionType.LIVE_MIGRATABLE and c.status == ConditionStatus.TRUE
               for c in conditions or [])


def is_non_evictable(vmi: VirtualMachineInstance, cluster_strategy: str | None) -> bool:
    """KubeVirt's ``kubevirt_vmi_non_evictable`` rule: the strategy asks for a live migration
    on eviction (LiveMigrate; LiveMigrateIfPossible only when migratable) and ``LiveMigratable``
    is not True (missing counts as not migratable)."""
    return eviction_strategy_of(vmi, cluster_strategy) == EvictionStrategy.LIVE_MIGRATE and not is_migratable(vmi)


@dataclass(frozen=True)
class EvacuationPlan:
    """For one drained node: VMIs to mark with ``evacuationNodeName``, VMIs to give a VMIM, and
    VMIs that should leave but cannot migrate."""

    mark: list[VirtualMachineInstance] = field(default_factory=list)
    migrate: list[VirtualMachineInstance] = field(default_factory=list)
    blocked: list[VirtualMachineInstance] = field(default_factory=list)


def compute_evacuation(node_name: str, vmis_on_node: Iterable[VirtualMachineInstance], in_flight: set[str],
                       cluster_strategy: str | None) -> EvacuationPlan:
    """The plan for drained node ``node_name``. ``vmis_on_node``: VMIs whose ``status.nodeName`` is
    the node; ``in_flight``: ``namespace/name`` keys of VMIs that have a non-final VMIM."""
    plan = EvacuationPlan()
    for vmi in vmis_on_node:
        meta = vmi.metadata
        status = vmi.status
        if meta is None or status is None or meta.deletion_timestamp or status.phase != Phase.RUNNING \
                or status.node_name != node_name:
            continue
        strategy = eviction_strategy_of(vmi, cluster_strategy)
        if strategy == EvictionStrategy.EXTERNAL:
            if status.evacuation_node_name != node_name:
                plan.mark.append(vmi)
            continue
        if strategy not in (EvictionStrategy.LIVE_MIGRATE, EvictionStrategy.LIVE_MIGRATE_IF_POSSIBLE):
            continue
        if not is_migratable(vmi):
            if strategy == EvictionStrategy.LIVE_MIGRATE:
                plan.blocked.append(vmi)
            continue
        if status.evacuation_node_name != node_name:
            plan.mark.append(vmi)
        if f"{meta.namespace}/{meta.name}" not in in_flight:
            plan.migrate.append(vmi)
    return plan


def compute_evacuation_vmim(vmi: VirtualMachineInstance, node_name: str) -> VirtualMachineInstanceMigration:
    """The VMIM that moves ``vmi`` off ``node_name`` (KubeVirt's ``GenerateNewMigration``), with
    the label and finalizer virt-api's VMIM mutator would add (it is written to the store directly)."""
    namespace = vmi.metadata.namespace if vmi.metadata is not None else None
    name = vmi.metadata.name if vmi.metadata is not None else None
    return VirtualMachineInstanceMigration(
        api_version="kubevirt.io/v1", kind="VirtualMachineInstanceMigration",
        metadata=ObjectMeta(generate_name=EVACUATION_GENERATE_NAME, namespace=namespace,
                            annotations={EVACUATION_ANNOTATION: node_name}, labels={VMI_NAME_LABEL: name or ""},
                            finalizers=[MIGRATION_FINALIZER]),
        spec=VirtualMachineInstanceMigrationSpec(vmi_name=name, priority=PRIORITY_SYSTEM_CRITICAL))
