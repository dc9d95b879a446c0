"""``migrations.kubevirt.io/v1alpha1`` MigrationPolicy (cluster-scoped): migration options for
VMIs selected by namespace and VMI labels (kubevirt-api.md §8)."""

from __future__ import annotations

import msgspec

from shared.api.base import ApiStruct, Int64, Object, Quantity, StrMap, UInt64
from shared.api.meta import ObjectMeta


class Selectors(ApiStruct, kw_only=True):
    """Plain equality label maps; every listed label must match."""

    namespace_selector: StrMap | None = None
    virtual_machine_instance_selector: StrMap | None = None


class MigrationPolicySpec(ApiStruct, kw_only=True):
    """Selectors plus the options that override the cluster's migration configuration."""

    selectors: Selectors
    allow_auto_converge: bool | None = None
    bandwidth_per_migration: Quantity | None = None
    completion_timeout_per_gib: Int64 | None = msgspec.field(default=None, name="completionTimeoutPerGiB")
    allow_post_copy: bool | None = None
    allow_workload_disruption: bool | None = None
    max_downtime_ms: UInt64 | None = None
    experimental: Object | None = None


class MigrationPolicy(ApiStruct, kw_only=True):
    """Migration options for a set of VMIs."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: MigrationPolicySpec
    status: Object | None = None
