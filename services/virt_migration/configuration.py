"""The effective migration configuration of a VMI (pure).

Three layers, as KubeVirt resolves them:

1. KubeVirt's code defaults (``pkg/virt-config/virt-config.go``): parallelMigrationsPerCluster 5,
   parallelOutboundMigrationsPerNode 2, bandwidthPerMigration ``0Mi`` (unlimited),
   completionTimeoutPerGiB 150, progressTimeout 150, maxDowntimeMs 900
   (``DefaultMigrationMaxDowntimeMs``), allowAutoConverge false, allowPostCopy false,
   nodeDrainTaintKey ``kubevirt.io/drain``;
2. every field set in the KubeVirt object's ``spec.configuration.migrations`` (the first
   KubeVirt object by namespace/name; read on every decision, so a change applies to migrations
   not yet handed off); ``allowWorkloadDisruption`` unset follows ``allowPostCopy``
   (``ClusterConfig.GetMigrationConfiguration``);
3. the best-matching MigrationPolicy (``pkg/virt-controller/watch/migration/migrationpolicy.go``):
   a policy matches when every label of its ``virtualMachineInstanceSelector`` is on the VMI and
   every label of its ``namespaceSelector`` is on the VMI's namespace (empty selectors match all);
   the most matched labels win, then the most VMI-label matches, then the smallest name. Its set
   fields override the cluster's; ``allowPostCopy`` set without ``allowWorkloadDisruption`` sets
   that one too.

Namespaces are not objects here yet: a namespace's labels are only Kubernetes' standard
``kubernetes.io/metadata.name=<namespace>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.api.kubevirt import KubeVirt, MigrationConfiguration
from shared.api.migration_vocabulary import DEFAULT_NODE_DRAIN_TAINT_KEY
from shared.api.migrationpolicy import MigrationPolicy

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label Kubernetes puts on every Namespace: its own name."""


@dataclass(frozen=True)
class MigrationOptions:
    """What one migration runs with (the fields of KubeVirt's ``migrationConfiguration`` that the
    hand-off writes on the VMI). Seconds, milliseconds; bandwidth a Kubernetes quantity (bytes/s,
    ``0Mi`` = unlimited)."""

    bandwidth_per_migration: str = "0Mi"
    completion_timeout_per_gib: int = 150
    progress_timeout: int = 150
    max_downtime_ms: int = 900
    allow_auto_converge: bool = False
    allow_post_copy: bool = False
    allow_workload_disruption: bool = False

    def to_configuration(self) -> dict[str, Any]:
        """``migrationState.migrationConfiguration`` with KubeVirt's field names."""
        return {"bandwidthPerMigration": self.bandwidth_per_migration,
                "completionTimeoutPerGiB": self.completion_timeout_per_gib,
                "progressTimeout": self.progress_timeout, "maxDowntimeMs": self.max_downtime_ms,
                "allowAutoConverge": self.allow_auto_converge, "allowPostCopy": self.allow_post_copy,
                "allowWorkloadDisruption": self.allow_workload_disruption}


@dataclass(frozen=True)
class ClusterMigrationConfig:
    """The installation's migration settings after defaults (layers 1 and 2), plus the cluster
    ``evictionStrategy`` (None when unset: KubeVirt's default is no strategy)."""

    parallel_migrations_per_cluster: int = 5
    parallel_outbound_migrations_per_node: int = 2
    node_drain_taint_key: str = DEFAULT_NODE_DRAIN_TAINT_KEY
    options: MigrationOptions = MigrationOptions()
    eviction_strategy: str | None = None


def select_kubevirt(objects: Iterable[KubeVirt]) -> KubeVirt | None:
    """The KubeVirt object that configures the installation: the first by namespace and name
    (KubeVirt allows one; a second is ignored), or None when there is none."""
    def sort_key(kv: KubeVirt) -> tuple[str, str]:
        meta = kv.metadata
        return ((meta.namespace or "") if meta else "", (meta.name or "") if meta else "")
    ordered = sorted(objects, key=sort_key)
    return ordered[0] if ordered else None


def compute_cluster_config(kubevirt: KubeVirt | None) -> ClusterMigrationConfig:
    """Layers 1 and 2: KubeVirt's defaults overlaid by the set fields of ``kubevirt``'s
    ``spec.configuration.migrations`` (None: the defaults). Limits below 0 count as 0."""
    spec_config = kubevirt.spec.configuration if kubevirt is not None and kubevirt.spec is not None else None
    given = spec_config.migrations if spec_config is not None else None
    base = ClusterMigrationConfig(eviction_strategy=spec_config.eviction_strategy if spec_config else None)
    if given is None:
        return base
    return replace(
        base,
        parallel_migrations_per_cluster=_pick(given.parallel_migrations_per_cluster,
                                              base.parallel_migrations_per_cluster),
        parallel_outbound_migrations_per_node=_pick(given.parallel_outbound_migrations_per_node,
                                                    base.parallel_outbound_migrations_per_node),
        node_drain_taint_key=given.node_drain_taint_key or base.node_drain_taint_key,
        options=_cluster_options(given, base.options))


def _pick(value: int | None, default: int) -> int:
    return max(int(value), 0) if value is not None else default


def _cluster_options(given: MigrationConfiguration, base: MigrationOptions) -> MigrationOptions:
    post_copy = given.allow_post_copy if given.allow_post_copy is not None else base.allow_post_copy
    return MigrationOptions(
        bandwidth_per_migration=str(given.bandwidth_per_migration)
        if given.bandwidth_per_migration is not None else base.bandwidth_per_migration,
        completion_timeout_per_gib=given.completion_timeout_per_gib
        if given.completion_timeout_per_gib is not None else base.completion_timeout_per_gib,
        progress_timeout=given.progress_timeout if given.progress_timeout is not None else base.progress_timeout,
        max_downtime_ms=given.max_downtime_ms if given.max_downtime_ms is not None else base.max_downtime_ms,
        allow_auto_converge=given.allow_auto_converge
        if given.allow_auto_converge is not None else base.allow_auto_converge,
        allow_post_copy=post_copy,
        allow_workload_disruption=given.allow_workload_disruption
        if given.allow_workload_disruption is not None else post_copy)


def compute_namespace_labels(namespace: str | None) -> dict[str, str]:
    """The labels of ``namespace``: only ``kubernetes.io/metadata.name`` (no Namespace objects yet)."""
    return {NAMESPACE_NAME_LABEL: namespace or "default"}


def _count_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> int | None:
    """How many labels of ``selector`` ``labels`` carry; None when one is missing or differs."""
    if not selector:
        return 0
    for key, value in selector.items():
        if labels.get(key) != value:
            return None
    return len(selector)


def compute_policy_score(policy: MigrationPolicy, vmi_labels: Mapping[str, str],
                         namespace_labels: Mapping[str, str]) -> tuple[int, int] | None:
    """(matched labels in total, matched VMI labels) of ``policy``, or None when it does not match
    (a selector label missing or different)."""
    selectors = policy.spec.selectors  # required by the schema: a policy without selectors is refused
    vmi_count = _count_matches(selectors.virtual_machine_instance_selector, vmi_labels)
    ns_count = _count_matches(selectors.namespace_selector, namespace_labels)
    if vmi_count is None or ns_count is None:
        return None
    return vmi_count + ns_count, vmi_count


def match_policy(policies: Iterable[MigrationPolicy], vmi_labels: Mapping[str, str] | None,
                 namespace: str | None) -> MigrationPolicy | None:
    """The MigrationPolicy for a VMI with ``vmi_labels`` in ``namespace`` (see the module
    docstring for KubeVirt's precedence), or None."""
    ns_labels = compute_namespace_labels(namespace)
    best: tuple[int, int, str] | None = None
    chosen: MigrationPolicy | None = None
    for policy in policies:
        score = compute_policy_score(policy, vmi_labels or {}, ns_labels)
        if score is None:
            continue
        name = (policy.metadata.name or "") if policy.metadata else ""
        # higher total, then higher VMI count, then the lexicographically smaller name
        rank = (score[0], score[1], name)
        if best is None or (rank[0], rank[1]) > (best[0], best[1]) or \
                ((rank[0], rank[1]) == (best[0], best[1]) and name < best[2]):
            best, chosen = rank, policy
    return chosen


def compute_policy_options(base: MigrationOptions, policy: MigrationPolicy | None) -> MigrationOptions:
    """``base`` with the set fields of ``policy`` (KubeVirt's ``applyMigrationPolicySpec``)."""
    if policy is None:
        return base
    spec = policy.spec
    result = base
    if spec.allow_workload_disruption is None and spec.allow_post_copy is not None:
        result = replace(result, allow_workload_disruption=spec.allow_post_copy)
    if spec.allow_auto_converge is not None:
        result = replace(result, allow_auto_converge=spec.allow_auto_converge)
    if spec.bandwidth_per_migration is not None:
        result = replace(result, bandwidth_per_migration=str(spec.bandwidth_per_migration))
    if spec.completion_timeout_per_gib is not None:
        result = replace(result, completion_timeout_per_gib=spec.completion_timeout_per_gib)
    if spec.max_downtime_ms is not None:
        result = replace(result, max_downtime_ms=spec.max_downtime_ms)
    if spec.allow_post_copy is not None:
        result = replace(result, allow_post_copy=spec.allow_post_copy)
    if spec.allow_workload_disruption is not None:
        result = replace(result, allow_workload_disruption=spec.allow_workload_disruption)
    return result


@dataclass(frozen=True)
class EffectiveMigration:
    """The options of one VMI's migration and the policy they came from (None: the cluster's)."""

    options: MigrationOptions
    policy_name: str | None = None


def compute_effective_migration(cluster: ClusterMigrationConfig, policies: Iterable[MigrationPolicy],
                                vmi_labels: Mapping[str, str] | None, namespace: str | None) -> EffectiveMigration:
    """All three layers for a VMI with ``vmi_labels`` in ``namespace``."""
    policy = match_policy(policies, vmi_labels, namespace)
    name = policy.metadata.name if policy is not None and policy.metadata is not None else None
    return EffectiveMigration(options=compute_policy_options(cluster.options, policy), policy_name=name)
