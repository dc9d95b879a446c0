"""The words of live migration: VMIM phases, abort statuses, modes, methods, the reasons of the
``LiveMigratable`` condition, and the labels, annotations and finalizers migration puts on objects.

Sources: ``staging/src/kubevirt.io/api/core/v1/types.go`` (VirtualMachineInstanceMigrationPhase,
MigrationAbortStatus, MigrationMode, VirtualMachineInstanceMigrationMethod, the
``*NotLiveMigratable`` reasons, MigrationJobLabel, MigrationTargetNodeNameLabel,
VirtualMachineInstanceMigrationConditionType), ``pkg/virt-controller/watch/migration`` (finalizer,
evacuation annotation) and kubevirt-api.md §8. The ``kubevirt-py.io/`` names are this project's.
"""

from __future__ import annotations

from enum import StrEnum


class MigrationPhase(StrEnum):
    """``VirtualMachineInstanceMigration.status.phase``; "" (unset) is :attr:`UNSET`."""

    UNSET = ""
    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    PREPARING_TARGET = "PreparingTarget"
    TARGET_READY = "TargetReady"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINAL_MIGRATION_PHASES: frozenset[str] = frozenset({MigrationPhase.SUCCEEDED, MigrationPhase.FAILED})
"""A VMIM in one of these phases never changes phase again."""

RUNNING_MIGRATION_PHASES: frozenset[str] = frozenset({
    MigrationPhase.SCHEDULING, MigrationPhase.SCHEDULED, MigrationPhase.PREPARING_TARGET,
    MigrationPhase.TARGET_READY, MigrationPhase.RUNNING})
"""Phases that count against ``parallelMigrationsPerCluster`` and
``parallelOutboundMigrationsPerNode`` (KubeVirt counts every migration past Pending and not final)."""


def is_final_migration_phase(phase: str | None) -> bool:
    """Whether a VMIM in ``phase`` has ended (Succeeded or Failed)."""
    return phase in FINAL_MIGRATION_PHASES


class MigrationAbortStatus(StrEnum):
    """``migrationState.abortStatus``."""

    ABORTING = "Aborting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class MigrationMode(StrEnum):
    """``migrationState.mode``: how the memory is moving."""

    PRE_COPY = "PreCopy"
    POST_COPY = "PostCopy"
    PAUSED = "Paused"


class MigrationMethod(StrEnum):
    """``vmi.status.migrationMethod``: BlockMigration when local disks are copied along."""

    LIVE_MIGRATION = "LiveMigration"
    BLOCK_MIGRATION = "BlockMigration"


class MigrationConditionType(StrEnum):
    """Conditions of a VMIM."""

    ABORT_REQUESTED = "migrationAbortRequested"


class LiveMigratableReason(StrEnum):
    """Reasons of ``LiveMigratable=False`` (types.go ``*NotLiveMigratable``)."""

    DISKS_NOT_LIVE_MIGRATABLE = "DisksNotLiveMigratable"
    INTERFACE_NOT_LIVE_MIGRATABLE = "InterfaceNotLiveMigratable"
    HOTPLUG_NOT_LIVE_MIGRATABLE = "HotplugNotLiveMigratable"
    CPU_MODE_NOT_LIVE_MIGRATABLE = "CPUModeLiveMigratable"
    HOST_DEVICE_NOT_LIVE_MIGRATABLE = "HostDeviceNotLiveMigratable"
    SEV_NOT_LIVE_MIGRATABLE = "SEVNotLiveMigratable"
    TDX_NOT_LIVE_MIGRATABLE = "TDXNotLiveMigratable"
    SECURE_EXECUTION_NOT_LIVE_MIGRATABLE = "SecureExecutionNotLiveMigratable"
    TSC_NOT_LIVE_MIGRATABLE = "NoTSCFrequencyNotLiveMigratable"
    HYPERV_PASSTHROUGH_NOT_LIVE_MIGRATABLE = "HypervPassthroughNotLiveMigratable"
    VIRTIOFS_NOT_LIVE_MIGRATABLE = "VirtIOFSNotLiveMigratable"
    PERSISTENT_RESERVATION_NOT_LIVE_MIGRATABLE = "PersistentReservationNotLiveMigratable"


class EvictionStrategy(StrEnum):
    """``spec.evictionStrategy`` of a VMI (and the cluster default)."""

    NONE = "None"
    LIVE_MIGRATE = "LiveMigrate"
    LIVE_MIGRATE_IF_POSSIBLE = "LiveMigrateIfPossible"
    EXTERNAL = "External"


MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"
"""Finalizer the VMIM mutator adds; virt-migration removes it once the VMIM is final."""

VMI_NAME_LABEL = "kubevirt.io/vmi-name"
"""Label the VMIM mutator puts on a VMIM: the name of the VMI it moves."""

MIGRATION_TARGET_NODE_LABEL = "kubevirt.io/migrationTargetNodeName"
"""Label virt-migration puts on the VMI at hand-off: the node the VMI is moving to."""

MIGRATION_JOB_LABEL = "kubevirt.io/migrationJobUID"
"""KubeVirt labels the target pod with the VMIM's uid; here unused on pods, kept for the name."""

EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"
"""Annotation on a VMIM created to evacuate a node (its value: the node's name)."""

DEFAULT_NODE_DRAIN_TAINT_KEY = "kubevirt.io/drain"
"""``migrations.nodeDrainTaintKey``'s default."""

ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION = "kubevirt.io/allow-pod-bridge-network-live-migration"
"""With this annotation a bridge binding on the pod network does not block migration."""

NODE_MIGRATION_URI_ANNOTATION = "kubevirt-py.io/libvirt-migration-uri"
"""On a Node (written by its virt-handler): the libvirt URI through which another node's libvirt
daemon reaches this node's daemon for a peer-to-peer migration."""

NODE_VMI_STATE_DIR_ANNOTATION = "kubevirt-py.io/vmi-state-dir"
"""On a Node (written by its virt-handler): the directory holding that node's per-VMI files
(overlays, cloud-init ISOs, console logs); the source rewrites these paths in the domain XML it
sends to the target."""

MIGRATION_TRACEPARENT_ANNOTATION = "kubevirt-py.io/migration-traceparent"
"""On a VMI (written by virt-migration at hand-off): the W3C traceparent of the VMIM's trace, so
both virt-handlers put their spans of the migration into it."""

KEEP_FINALIZED_MIGRATIONS_PER_VMI = 5
"""Finalized VMIMs kept per VMI; older ones are garbage-collected (KubeVirt's
``defaultFinalizedMigrationGarbageCollectionBuffer``)."""
