"""``kubevirt.io/v1`` KubeVirt: the installation's configuration object (one per installation;
the embedded installation creates ``kubevirt/kubevirt``). Only the parts this project reads are
typed; the rest of ``spec.configuration`` is kept as given.

Source: kubevirt.io/api core/v1 types.go (KubeVirt, KubeVirtConfiguration, MigrationConfiguration)
and pkg/virt-config/virt-config.go for the defaults (kubevirt-api.md §1, §8 "Tunables")."""

from __future__ import annotations

import msgspec

from shared.api.base import ApiStruct, Int64, Object, Quantity, StrMap
from shared.api.meta import Condition, ObjectMeta


class MigrationConfiguration(ApiStruct, kw_only=True):
    """``spec.configuration.migrations``; unset fields take KubeVirt's defaults (see
    ``services.virt_migration.configuration``)."""

    parallel_migrations_per_cluster: Int64 | None = None
    parallel_outbound_migrations_per_node: Int64 | None = None
    bandwidth_per_migration: Quantity | None = None
    completion_timeout_per_gib: Int64 | None = msgspec.field(default=None, name="completionTimeoutPerGiB")
    progress_timeout: Int64 | None = None
    max_downtime_ms: Int64 | None = None
    allow_auto_converge: bool | None = None
    allow_post_copy: bool | None = None
    allow_workload_disruption: bool | None = None
    unsafe_migration_override: bool | None = None
    node_drain_taint_key: str | None = None
    disable_tls: bool | None = msgspec.field(default=None, name="disableTLS")
    network: str | None = None
    match_se_linux_level_on_migration: bool | None = msgspec.field(default=None, name="matchSELinuxLevelOnMigration")
    utility_volumes_timeout: Int64 | None = None


class DeveloperConfiguration(ApiStruct, kw_only=True):
    """``spec.configuration.developerConfiguration`` (feature gates)."""

    feature_gates: list[str] | None = None
    disabled_feature_gates: list[str] | None = None


class KubeVirtConfiguration(ApiStruct, kw_only=True):
    """``spec.configuration``: migrations, eviction strategy, feature gates (others kept as given)."""

    migrations: MigrationConfiguration | None = None
    eviction_strategy: str | None = None
    developer_configuration: DeveloperConfiguration | None = None
    network: Object | None = None
    cpu_model: str | None = None
    cpu_request: Quantity | None = None
    machine_type: str | None = None
    architecture_configuration: Object | None = None
    vm_rollout_strategy: str | None = None


class KubeVirtSpec(ApiStruct, kw_only=True):
    """``spec`` of the KubeVirt object."""

    configuration: KubeVirtConfiguration | None = None
    image_tag: str | None = None
    image_registry: str | None = None
    image_pull_policy: str | None = None
    workload_update_strategy: Object | None = None
    infra: Object | None = None
    workloads: Object | None = None
    certificate_rotate_strategy: Object | None = None
    uninstall_strategy: str | None = None
    customize_components: Object | None = None
    product_name: str | None = None
    product_version: str | None = None
    product_component: str | None = None


class KubeVirtStatus(ApiStruct, kw_only=True):
    """``status``: ``phase`` (Deploying, Deployed, Deleting, ...) and conditions."""

    phase: str | None = None
    conditions: list[Condition] | None = None
    observed_kube_virt_version: str | None = None
    target_kube_virt_version: str | None = None
    observed_generation: Int64 | None = None
    operator_version: str | None = None
    default_architecture: str | None = None
    outdated_virtual_machine_instance_workloads: Int64 | None = None
    generations: list[Object] | None = None
    observed_deployment_config: str | None = None
    observed_deployment_id: str | None = msgspec.field(default=None, name="observedDeploymentID")
    target_deployment_config: str | None = None
    target_deployment_id: str | None = msgspec.field(default=None, name="targetDeploymentID")
    target_kube_virt_registry: str | None = None
    observed_kube_virt_registry: str | None = None
    labels: StrMap | None = None


class KubeVirt(ApiStruct, kw_only=True):
    """The installation's configuration."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: KubeVirtSpec | None = None
    status: KubeVirtStatus | None = None
