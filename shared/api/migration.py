"""``kubevirt.io/v1`` VirtualMachineInstanceMigration and the migration state a VMI reports
(source: kubevirt.io/api core/v1 types.go; kubevirt-api.md §8)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.api.base import ApiStruct, Int64, Object, StrMap, describe
from shared.api.meta import Condition, ObjectMeta


class PhaseTransitionTimestamp(ApiStruct, kw_only=True):
    """When an object entered ``phase`` (RFC 3339)."""

    phase: str | None = None
    phase_transition_timestamp: str | None = None


class MigrationProgress(ApiStruct, kw_only=True):
    """``migrationState.progress`` (a kubevirt-py extension, not in KubeVirt): the source
    virt-handler's latest sample of libvirt's job statistics (``virDomainGetJobStats``) while the
    migration runs, and the QEMU-reported ``downtimeMs`` once it has ended. Bytes, bytes per
    second, milliseconds. ``data*`` cover the whole transfer (memory and the disks block
    migration copies), ``disk*`` the disks' share; ``memoryIteration`` and the rates are absent
    while only disks are being copied (the memory transfer has not begun)."""

    data_processed_bytes: Int64 | None = None
    data_remaining_bytes: Int64 | None = None
    data_total_bytes: Int64 | None = None
    disk_processed_bytes: Int64 | None = None
    disk_remaining_bytes: Int64 | None = None
    disk_total_bytes: Int64 | None = None
    memory_iteration: Int64 | None = None
    dirty_memory_rate_bytes: Int64 | None = None
    transfer_rate_bytes: Int64 | None = None
    elapsed_ms: Int64 | None = None
    downtime_ms: Int64 | None = None
    updated_timestamp: str | None = None


class MigrationState(ApiStruct, kw_only=True):
    """``vmi.status.migrationState``: progress of the current or last migration."""

    start_timestamp: str | None = None
    end_timestamp: str | None = None
    target_node_domain_ready_timestamp: str | None = None
    target_node_domain_detected: bool | None = None
    target_node_address: str | None = None
    target_direct_migration_node_ports: dict[str, Int64] | None = None
    target_node: str | None = None
    target_pod: str | None = None
    target_attachment_pod_uid: str | None = msgspec.field(default=None, name="targetAttachmentPodUID")
    source_node: str | None = None
    source_pod: str | None = None
    completed: bool | None = None
    failed: bool | None = None
    abort_requested: bool | None = None
    abort_status: str | None = None
    failure_reason: str | None = None
    migration_uid: str | None = None
    mode: str | None = None
    migration_policy_name: str | None = None
    migration_configuration: Object | None = None
    target_cpu_set: list[Int64] | None = msgspec.field(default=None, name="targetCPUSet")
    target_node_topology: str | None = None
    source_persistent_state_pvc_name: str | None = msgspec.field(
        default=None, name="sourcePersistentStatePVCName"
    )
    target_persistent_state_pvc_name: str | None = msgspec.field(
        default=None, name="targetPersistentStatePVCName"
    )
    source_state: Object | None = None
    target_state: Object | None = None
    migration_network_type: str | None = None
    target_memory_overhead: str | None = None
    progress: MigrationProgress | None = None


class VirtualMachineInstanceMigrationSpec(ApiStruct, kw_only=True):
    """Which VMI to move and constraints on the target."""

    vmi_name: Annotated[str | None, describe("Name of the VMI to migrate (same namespace).")] = None
    added_node_selector: StrMap | None = None
    priority: str | None = None
    send_to: Object | None = None
    receive: Object | None = None


class VirtualMachineInstanceMigrationStatus(ApiStruct, kw_only=True):
    """Phase (Pending ... Succeeded/Failed), conditions and a copy of the migration state."""

    phase: str | None = None
    phase_transition_timestamps: list[PhaseTransitionTimestamp] | None = None
    conditions: list[Condition] | None = None
    migration_state: MigrationState | None = None
    synchronization_addresses: list[str] | None = None


class VirtualMachineInstanceMigration(ApiStruct, kw_only=True):
    """A request to live-migrate one VMI."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineInstanceMigrationSpec
    status: VirtualMachineInstanceMigrationStatus | None = None
