"""Effective migration configuration (services.virt_migration.configuration): KubeVirt's defaults,
the KubeVirt object's spec.configuration.migrations, MigrationPolicy matching and precedence
(kubevirt-api.md §8; KubeVirt migrationpolicy.go, virt-config.go)."""
from __future__ import annotations

import msgspec
import pytest

from services.virt_migration.configuration import (
    ClusterMigrationConfig,
    MigrationOptions,
    compute_cluster_config,
    compute_effective_migration,
    match_policy,
    select_kubevirt,
)
from shared.api.kubevirt import KubeVirt
from shared.api.migrationpolicy import MigrationPolicy


def kubevirt(migrations: dict | None = None, name: str = "kubevirt", **config) -> KubeVirt:
    configuration = dict(config)
    if migrations is not None:
        configuration["migrations"] = migrations
    return msgspec.convert({"metadata": {"name": name, "namespace": "kubevirt"},
                            "spec": {"configuration": configuration}}, KubeVirt)


def policy(name: str, vmi: dict | None = None, ns: dict | None = None, **fields) -> MigrationPolicy:
    sel = {}
    if vmi is not None:
        sel["virtualMachineInstanceSelector"] = vmi
    if ns is not None:
        sel["namespaceSelector"] = ns
    spec = {"selectors": sel, **fields}
    return msgspec.convert({"metadata": {"name": name}, "spec": spec}, MigrationPolicy)


def test_kubevirt_defaults():
    config = compute_cluster_config(None)
    assert config == ClusterMigrationConfig()
    assert (config.parallel_migrations_per_cluster, config.parallel_outbound_migrations_per_node) == (5, 2)
    assert config.node_drain_taint_key == "kubevirt.io/drain"
    assert config.options.to_configuration() == {
        "bandwidthPerMigration": "0Mi", "completionTimeoutPerGiB": 150, "progressTimeout": 150,
        "maxDowntimeMs": 900, "allowAutoConverge": False, "allowPostCopy": False, "allowWorkloadDisruption": False}
    assert config.eviction_strategy is None


def test_the_kubevirt_object_overrides_only_what_it_sets():
    config = compute_cluster_config(kubevirt({"parallelMigrationsPerCluster": 1, "bandwidthPerMigration": "64Mi",
                                              "nodeDrainTaintKey": "example.com/drain"}, evictionStrategy="LiveMigrate"))
    assert config.parallel_migrations_per_cluster == 1
    assert config.parallel_outbound_migrations_per_node == 2
    assert config.node_drain_taint_key == "example.com/drain"
    assert config.options.bandwidth_per_migration == "64Mi"
    assert config.options.progress_timeout == 150
    assert config.eviction_strategy == "LiveMigrate"


@pytest.mark.parametrize("given, post_copy, disruption", [
    ({"allowPostCopy": True}, True, True),                                     # follows allowPostCopy
    ({"allowPostCopy": True, "allowWorkloadDisruption": False}, True, False),
    ({"allowWorkloadDisruption": True}, False, True),
    ({}, False, False),
])
def test_cluster_allow_workload_disruption_follows_allow_post_copy_when_unset(given, post_copy, disruption):
    options = compute_cluster_config(kubevirt(given)).options
    assert (options.allow_post_copy, options.allow_workload_disruption) == (post_copy, disruption)


def test_the_first_kubevirt_object_configures_the_installation():
    chosen = select_kubevirt([kubevirt({"parallelMigrationsPerCluster": 9}, name="zz"), kubevirt(name="kubevirt")])
    assert chosen.metadata.name == "kubevirt"
    assert select_kubevirt([]) is None


def test_a_policy_matches_only_when_every_listed_label_matches():
    p = policy("p", vmi={"app": "db", "tier": "x"})
    assert match_policy([p], {"app": "db", "tier": "x", "other": "1"}, "default") is p
    assert match_policy([p], {"app": "db"}, "default") is None
    assert match_policy([p], {"app": "db", "tier": "y"}, "default") is None


def test_empty_selectors_match_everything():
    empty = policy("empty")
    assert match_policy([empty], {}, "default") is empty


def test_namespace_selector_sees_the_standard_name_label():
    p = policy("ns", ns={"kubernetes.io/metadata.name": "prod"})
    assert match_policy([p], {}, "prod") is p
    assert match_policy([p], {}, "default") is None
    assert match_policy([policy("other", ns={"team": "a"})], {"team": "a"}, "prod") is None  # no namespace labels


def test_precedence_most_labels_then_vmi_labels_then_name():
    labels = {"a": "1", "b": "2"}
    one = policy("one", vmi={"a": "1"})
    two = policy("two", vmi={"a": "1", "b": "2"})
    assert match_policy([one, two], labels, "prod") is two
    # same total (2): one VMI label + the namespace label loses to two VMI labels
    mixed = policy("aaa", vmi={"a": "1"}, ns={"kubernetes.io/metadata.name": "prod"})
    assert match_policy([mixed, two], labels, "prod") is two
    # full tie: the lexicographically smaller name
    twin = policy("abc", vmi={"b": "2", "a": "1"})
    assert match_policy([two, twin], labels, "prod") is twin


def test_policy_fields_override_the_cluster_and_post_copy_carries_disruption():
    cluster = ClusterMigrationConfig(options=MigrationOptions(bandwidth_per_migration="32Mi", max_downtime_ms=500))
    p = policy("fast", vmi={"app": "db"}, allowPostCopy=True, completionTimeoutPerGiB=30,
               bandwidthPerMigration="1Gi", allowAutoConverge=True)
    effective = compute_effective_migration(cluster, [p], {"app": "db"}, "default")
    assert effective.policy_name == "fast"
    assert effective.options.to_configuration() == {
        "bandwidthPerMigration": "1Gi", "completionTimeoutPerGiB": 30, "progressTimeout": 150,
        "maxDowntimeMs": 500, "allowAutoConverge": True, "allowPostCopy": True, "allowWorkloadDisruption": True}
    explicit = policy("x", vmi={}, allowPostCopy=True, allowWorkloadDisruption=False, maxDowntimeMs=100)
    options = compute_effective_migration(cluster, [explicit], {}, "default").options
    assert (options.allow_workload_disruption, options.max_downtime_ms) == (False, 100)


def test_without_a_policy_the_cluster_options_apply():
    effective = compute_effective_migration(ClusterMigrationConfig(), [policy("p", vmi={"x": "y"})], {}, "default")
    assert effective.policy_name is None and effective.options == MigrationOptions()
