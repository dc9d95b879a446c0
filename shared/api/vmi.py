"""``kubevirt.io/v1`` VirtualMachineInstance: spec (kubevirt-api.md §2) and status (§3)
(source: kubevirt.io/api core/v1 types.go)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.api.base import ApiStruct, Int32, Int64, Object, Quantity, StrMap, UInt32, UInt64, describe
from shared.api.core import (
    ExecAction,
    HTTPGetAction,
    PodDNSConfig,
    TCPSocketAction,
    Toleration,
)
from shared.api.domain import DomainSpec
from shared.api.meta import Condition, ObjectMeta
from shared.api.migration import MigrationState, PhaseTransitionTimestamp
from shared.api.networks import Network
from shared.api.volumes import Volume


class GuestAgentPing(ApiStruct, kw_only=True):
    """Probe by pinging the guest agent."""


class Probe(ApiStruct, kw_only=True):
    """Liveness/readiness probe: exactly one handler plus timing (defaults: timeout 1 s,
    period 10 s, success 1, failure 3)."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    guest_agent_ping: GuestAgentPing | None = None
    initial_delay_seconds: Int32 | None = None
    timeout_seconds: Int32 | None = None
    period_seconds: Int32 | None = None
    success_threshold: Int32 | None = None
    failure_threshold: Int32 | None = None


class SecretReference(ApiStruct, kw_only=True):
    """A Secret by name."""

    secret_name: str | None = None


class AccessCredentialSource(ApiStruct, kw_only=True):
    """Where the credential comes from."""

    secret: SecretReference | None = None


class EmptyPropagation(ApiStruct, kw_only=True):
    """A propagation method without options (noCloud, configDrive)."""


class QemuGuestAgentPropagation(ApiStruct, kw_only=True):
    """Propagate through the guest agent, for ``users``."""

    users: list[str] | None = None


class SSHPropagationMethod(ApiStruct, kw_only=True):
    """How SSH keys reach the guest: exactly one method."""

    no_cloud: EmptyPropagation | None = None
    config_drive: EmptyPropagation | None = None
    qemu_guest_agent: QemuGuestAgentPropagation | None = None


class PasswordPropagationMethod(ApiStruct, kw_only=True):
    """How passwords reach the guest (guest agent only)."""

    qemu_guest_agent: QemuGuestAgentPropagation | None = None


class SSHPublicKeyAccessCredential(ApiStruct, kw_only=True):
    """Authorized SSH keys from a Secret."""

    source: AccessCredentialSource | None = None
    propagation_method: SSHPropagationMethod | None = None


class UserPasswordAccessCredential(ApiStruct, kw_only=True):
    """User passwords from a Secret."""

    source: AccessCredentialSource | None = None
    propagation_method: PasswordPropagationMethod | None = None


class AccessCredential(ApiStruct, kw_only=True):
    """Exactly one of ``sshPublicKey`` or ``userPassword``."""

    ssh_public_key: SSHPublicKeyAccessCredential | None = None
    user_password: UserPasswordAccessCredential | None = None


class VirtualMachineInstanceSpec(ApiStruct, kw_only=True):
    """What the VMI is: its domain, volumes, networks and scheduling constraints."""

    priority_class_name: str | None = None
    domain: Annotated[DomainSpec, describe("The virtual hardware of the guest.")]
    node_selector: StrMap | None = None
    affinity: Object | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    topology_spread_constraints: list[Object] | None = None
    eviction_strategy: Annotated[
        str | None, describe("None, LiveMigrate, LiveMigrateIfPossible or External.")
    ] = None
    start_strategy: str | None = None
    termination_grace_period_seconds: Annotated[
        Int64 | None, describe("Seconds a graceful shutdown may take (30 when unset).")
    ] = None
    volumes: Annotated[list[Volume], msgspec.Meta(max_length=256)] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    hostname: str | None = None
    subdomain: str | None = None
    networks: Annotated[list[Network], msgspec.Meta(max_length=256)] | None = None
    dns_policy: str | None = None
    dns_config: PodDNSConfig | None = None
    access_credentials: Annotated[list[AccessCredential], msgspec.Meta(max_length=256)] | None = None
    architecture: str | None = None
    service_account_name: str | None = None
    utility_volumes: list[Object] | None = None
    resource_claims: list[Object] | None = None


class VirtualMachineInstanceNetworkInterface(ApiStruct, kw_only=True):
    """A guest NIC as observed (domain, guest agent, multus)."""

    name: str | None = None
    interface_name: str | None = None
    mac: str | None = None
    ip_address: str | None = msgspec.field(default=None, name="ipAddress")
    ip_addresses: list[str] | None = msgspec.field(default=None, name="ipAddresses")
    pod_interface_name: str | None = None
    info_source: str | None = None
    queue_count: Int32 | None = None
    link_state: str | None = None


class GuestOSInfo(ApiStruct, kw_only=True):
    """Guest OS identity reported by the guest agent."""

    name: str | None = None
    kernel_release: str | None = None
    version: str | None = None
    pretty_name: str | None = None
    version_id: str | None = None
    kernel_version: str | None = None
    machine: str | None = None
    id: str | None = None


class PersistentVolumeClaimInfo(ApiStruct, kw_only=True):
    """Facts about the PVC behind a volume."""

    claim_name: str | None = None
    access_modes: list[str] | None = None
    volume_mode: str | None = None
    capacity: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None
    preallocated: bool | None = None
    filesystem_overhead: str | None = None


class VolumeStatus(ApiStruct, kw_only=True):
    """State of one volume (``target`` is the guest device name, e.g. vda)."""

    name: str
    target: str | None = None
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    persistent_volume_claim_info: PersistentVolumeClaimInfo | None = None
    hotplug_volume: Object | None = None
    size: Int64 | None = None
    memory_dump_volume: Object | None = None
    container_disk_volume: Object | None = None


class TopologyHints(ApiStruct, kw_only=True):
    """Scheduling hints (TSC frequency in Hz)."""

    tsc_frequency: Int64 | None = None


class CPUTopology(ApiStruct, kw_only=True):
    """A CPU topology (current, as booted)."""

    sockets: UInt32 | None = None
    cores: UInt32 | None = None
    threads: UInt32 | None = None


class MemoryStatus(ApiStruct, kw_only=True):
    """Guest memory as booted, current and requested."""

    guest_at_boot: Quantity | None = None
    guest_current: Quantity | None = None
    guest_requested: Quantity | None = None
    memory_overhead: Quantity | None = None


class MachineStatus(ApiStruct, kw_only=True):
    """The resolved machine type."""

    type: str | None = None


class VirtualMachineInstanceStatus(ApiStruct, kw_only=True):
    """What the VMI is doing: phase, node, conditions, interfaces, migration state."""

    node_name: str | None = None
    reason: str | None = None
    conditions: list[Condition] | None = None
    phase: Annotated[
        str | None,
        describe("Pending, Scheduling, Scheduled, Running, Succeeded, Failed or Unknown."),
    ] = None
    phase_transition_timestamps: list[PhaseTransitionTimestamp] | None = None
    interfaces: list[VirtualMachineInstanceNetworkInterface] | None = None
    guest_os_info: GuestOSInfo | None = msgspec.field(default=None, name="guestOSInfo")
    migration_state: MigrationState | None = None
    migration_method: str | None = None
    migration_transport: str | None = None
    qos_class: str | None = None
    launcher_container_image_version: str | None = None
    evacuation_node_name: str | None = None
    active_pods: StrMap | None = None
    volume_status: list[VolumeStatus] | None = None
    fs_freeze_status: str | None = None
    topology_hints: TopologyHints | None = None
    virtual_machine_revision_name: str | None = None
    runtime_user: UInt64 | None = None
    vsockcid: UInt32 | None = msgspec.field(default=None, name="VSOCKCID")
    selinux_context: str | None = None
    machine: MachineStatus | None = None
    current_cpu_topology: CPUTopology | None = msgspec.field(default=None, name="currentCPUTopology")
    memory: MemoryStatus | None = None
    migrated_volumes: list[Object] | None = None
    kernel_boot_status: Object | None = None
    changed_block_tracking: Object | None = None


class VirtualMachineInstance(ApiStruct, kw_only=True):
    """A running (or about to run) virtual machine."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineInstanceSpec
    status: VirtualMachineInstanceStatus | None = None


class VirtualMachineInstanceTemplateSpec(ApiStruct, kw_only=True):
    """Metadata and spec of the VMIs a VM, VMIRS or pool creates."""

    metadata: ObjectMeta | None = None
    spec: VirtualMachineInstanceSpec | None = None


