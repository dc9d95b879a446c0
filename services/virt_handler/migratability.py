"""Whether a VMI can be live-migrated, and how (pure): the ``LiveMigratable`` condition and
``status.migrationMethod`` virt-handler reports.

Source of every rule, reason and message: KubeVirt v1.9 ``pkg/virt-handler/vm.go``
(``calculateLiveMigrationCondition``, ``checkVolumesForMigration``, ``isHostModelMigratable``,
``vmiContainsNonMigratablePCIHostDevices``), ``pkg/network/vmispec/interface.go``
(``VerifyVMIMigratable``), ``pkg/util`` (``IsSEVVMI``, ``IsTDXVMI``, ``IsSecureExecutionVMI``) and
``pkg/virt-controller/watch/topology/tsc.go`` (``GetTscFrequencyRequirement``); summary in
kubevirt-api.md §8 "Migratability".

The checks, in KubeVirt's order; the first failing one decides the condition
(``LiveMigratable=False`` with its reason and message), otherwise ``LiveMigratable=True``:

1. network: the interface on the pod network must use masquerade or passt; bridge only with the
   VMI annotation ``kubevirt.io/allow-pod-bridge-network-live-migration``; a binding plugin only
   when that plugin declares migration support -> ``InterfaceNotLiveMigratable``;
2. CPU model ``host-model`` on a node that offers no host model -> ``CPUModeLiveMigratable``;
3. host devices, more than one GPU, a GPU without the VGPULiveMigration gate or that is not a
   mediated device -> ``HostDeviceNotLiveMigratable``;
4. SEV/SNP -> ``SEVNotLiveMigratable``, TDX -> ``TDXNotLiveMigratable``;
5. launch security on s390x -> ``SecureExecutionNotLiveMigratable``;
6. Hyper-V reenlightenment without a TSC frequency in ``status.topologyHints`` ->
   ``NoTSCFrequencyNotLiveMigratable``;
7. ``features.hypervPassthrough.enabled`` -> ``HypervPassthroughNotLiveMigratable``;
8. volumes (``checkVolumesForMigration``): a PVC or DataVolume must be shared (``ReadWriteMany``
   in the volume's ``status.volumeStatus[].persistentVolumeClaimInfo.accessModes``; the embedded
   installation has no PVC objects yet, so a claim without that information counts as not shared,
   with KubeVirt's "Unable to determine" message); a hostDisk must say ``shared: true`` ->
   ``DisksNotLiveMigratable``.

Not blocking, as in KubeVirt v1.9: a volume shared through virtiofs (since KubeVirt v1.5 a
virtiofs filesystem migrates; the reason ``VirtIOFSNotLiveMigratable`` is defined but unused) and
SCSI persistent reservations (they only block the separate storage-migration condition;
``PersistentReservationNotLiveMigratable`` is not used for ``LiveMigratable``); the CPU feature
``invtsc`` is required for boot, not for migration (a VMI with it cannot start without a TSC
frequency at all).

Migration method: every other volume (containerDisk, emptyDisk, ephemeral, cloud-init, ...) is
local to the node and is copied along (``BlockMigration``), except one used by a read-only CD-ROM
(the target builds its own) or shared through virtiofs; ``status.migratedVolumes`` also means
``BlockMigration``; otherwise ``LiveMigration``. A failing volume check also reports
``BlockMigration`` (KubeVirt returns true with the error).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from shared.api.devices import Disk, Interface
from shared.api.meta import Condition
from shared.api.migration_vocabulary import (
    ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION,
    LiveMigratableReason,
    MigrationMethod,
)
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import ConditionStatus, ConditionType

TDX_NOT_LIVE_MIGRATABLE = LiveMigratableReason.TDX_NOT_LIVE_MIGRATABLE

CPU_MODE_HOST_MODEL = "host-model"
VGPU_LIVE_MIGRATION_GATE = "VGPULiveMigration"
READ_WRITE_MANY = "ReadWriteMany"
S390X = "s390x"

MSG_INTERFACE = ("cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the "
                 "pod network")
MSG_NON_SHARED_HOST_DISK = "cannot migrate VMI with non-shared HostDisk"
MSG_GENERIC_HOST_DEVICE = "VMI specifies non-migratable generic PCI host device"
MSG_TOO_MANY_GPUS = "VMI specifies too many GPUs"
MSG_GPU_GATE = f"VMI specifies a GPU but feature gate {VGPU_LIVE_MIGRATION_GATE} is not enabled"
MSG_NON_MDEV_GPU = "VMI specifies non-migratable GPU device"
MSG_SEV = "VMI uses SEV"
MSG_TDX = "VMI uses TDX"
MSG_SECURE_EXECUTION = "VMI uses Secure Execution"
MSG_HYPERV_PASSTHROUGH = "VMI uses hyperv passthrough"
MSG_REENLIGHTENMENT_TSC = ("HyperV Reenlightenment VMIs cannot migrate when TSC Frequency is not exposed on the "
                           "cluster: guest timers might be inconsistent")


def message_pvc_unknown(claim: str) -> str:
    """DisksNotLiveMigratable message for a claim whose access modes are not known."""
    return (f"cannot migrate VMI: Unable to determine if PVC {claim} is shared, live migration requires that all "
            "PVCs must be shared (using ReadWriteMany access mode)")


def message_pvc_not_shared(claim: str) -> str:
    """DisksNotLiveMigratable message for a claim without ``ReadWriteMany``."""
    return (f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be shared "
            "(using ReadWriteMany access mode)")


def message_host_model(node_name: str) -> str:
    """CPUModeLiveMigratable message: the VMI's node offers no host CPU model."""
    return f'the node "{node_name}" does not allow migration with host-model'


@dataclass(frozen=True)
class MigratabilityOptions:
    """What the node and cluster contribute to the decision.

    ``host_cpu_model``: the node's host CPU model (KubeVirt's node labeller; empty: the node does
    not allow ``host-model`` migration); ``migratable_bindings``: names of network binding
    plugins whose configuration declares ``migration``; ``vgpu_live_migration``: the
    ``VGPULiveMigration`` feature gate; ``mediated_devices``: ``permittedHostDevices``
    mediated-device resource names."""

    host_cpu_model: str = "host-model"
    migratable_bindings: Collection[str] = ()
    vgpu_live_migration: bool = False
    mediated_devices: Collection[str] = ()


DEFAULT_OPTIONS = MigratabilityOptions()


@dataclass(frozen=True)
class Migratability:
    """The outcome: ``live_migratable``; when False, ``reason`` (a
    :class:`~shared.api.migration_vocabulary.LiveMigratableReason` value or
    :data:`TDX_NOT_LIVE_MIGRATABLE`) and ``message``; ``method``, the
    :class:`~shared.api.migration_vocabulary.MigrationMethod` value."""

    live_migratable: bool
    reason: str | None
    message: str | None
    method: str

    def as_condition(self) -> Condition:
        """The ``LiveMigratable`` condition (no timestamps, as KubeVirt builds it)."""
        if self.live_migratable:
            return Condition(type=ConditionType.LIVE_MIGRATABLE.value, status=ConditionStatus.TRUE.value)
        return Condition(type=ConditionType.LIVE_MIGRATABLE.value, status=ConditionStatus.FALSE.value,
                         reason=self.reason, message=self.message)

    def as_condition_dict(self, now: str) -> dict[str, Any]:
        """The condition in the dict shape :mod:`services.virt_handler.status` builds
        (``lastProbeTime`` null, ``lastTransitionTime`` ``now``, reason/message only when set), for
        its ``with_conditions``."""
        cond: dict[str, Any] = {"type": ConditionType.LIVE_MIGRATABLE.value,
                                "status": ConditionStatus.TRUE.value if self.live_migratable
                                else ConditionStatus.FALSE.value,
                                "lastProbeTime": None, "lastTransitionTime": now}
        if self.reason:
            cond["reason"] = self.reason
        if self.message:
            cond["message"] = self.message
        return cond


def _interfaces(vmi: VirtualMachineInstance) -> list[Interface]:
    devices = vmi.spec.domain.devices
    return list(devices.interfaces or []) if devices is not None else []


def check_network(vmi: VirtualMachineInstance, migratable_bindings: Collection[str] = ()) -> str | None:
    """``VerifyVMIMigratable``: None when the interface on the pod network can migrate, else the
    message."""
    interfaces = _interfaces(vmi)
    if not interfaces:
        return None
    pod_network = next((n for n in vmi.spec.networks or [] if n.pod is not None), None)
    if pod_network is None:
        return None
    primary = next((i for i in interfaces if i.name == pod_network.name), None)
    if primary is None:
        return f"no primary interface found for network {pod_network.name}"
    if primary.masquerade is not None or primary.passt_binding is not None:
        return None
    if primary.bridge is not None:
        annotations = (vmi.metadata.annotations if vmi.metadata else None) or {}
        if ALLOW_POD_BRIDGE_MIGRATION_ANNOTATION in annotations:
            return None
    elif primary.binding is not None and primary.binding.name in migratable_bindings:
        return None
    return MSG_INTERFACE


def check_host_devices(vmi: VirtualMachineInstance, *, vgpu_live_migration: bool = False,
                       mediated_devices: Collection[str] = ()) -> str | None:
    """``vmiContainsNonMigratablePCIHostDevices``: None or the message."""
    devices = vmi.spec.domain.devices
    if devices is None:
        return None
    if devices.host_devices:
        return MSG_GENERIC_HOST_DEVICE
    gpus = devices.gpus or []
    if len(gpus) > 1:
        return MSG_TOO_MANY_GPUS
    if len(gpus) == 1 and not vgpu_live_migration:
        return MSG_GPU_GATE
    if len(gpus) == 1 and gpus[0].device_name not in mediated_devices:
        return MSG_NON_MDEV_GPU
    return None


def _launch_security(vmi: VirtualMachineInstance) -> dict[str, Any] | None:
    return vmi.spec.domain.launch_security


def _needs_tsc_for_migration(vmi: VirtualMachineInstance) -> bool:
    """``GetTscFrequencyRequirement(vmi).Type == RequiredForMigration`` without topology hints."""
    cpu = vmi.spec.domain.cpu
    if cpu is not None and any(f.name == "invtsc" and f.policy in ("require", "force") for f in cpu.features or []):
        return False  # RequiredForBoot, not ForMigration
    features = vmi.spec.domain.features
    hyperv = features.hyperv if features is not None else None
    reenlightenment = hyperv.reenlightenment if hyperv is not None else None
    if reenlightenment is None or not reenlightenment.enabled:
        return False
    hints = vmi.status.topology_hints if vmi.status is not None else None
    return not (hints is not None and hints.tsc_frequency is not None and hints.tsc_frequency > 0)


def _is_read_only_cdrom(disk: Disk) -> bool:
    return disk.cdrom is not None and disk.cdrom.readonly is not False


def _migrated_volume_names(vmi: VirtualMachineInstance) -> set[str]:
    migrated = (vmi.status.migrated_volumes if vmi.status is not None else None) or []
    return {str(v.get("volumeName")) for v in migrated if isinstance(v, dict) and v.get("volumeName")}


def check_volumes(vmi: VirtualMachineInstance) -> tuple[bool, str | None]:
    """``checkVolumesForMigration``: ``(block_migration, message)``; ``message`` is None when the
    volumes allow migration (rules in the module docstring)."""
    status = vmi.status
    claims = {vs.name: vs.persistent_volume_claim_info for vs in (status.volume_status if status else None) or []}
    migrated = _migrated_volume_names(vmi)
    block = bool(status is not None and status.migrated_volumes)
    devices = vmi.spec.domain.devices
    filesystems = {f.name for f in (devices.filesystems if devices else None) or []}
    read_only = {d.name for d in (devices.disks if devices else None) or [] if _is_read_only_cdrom(d)}
    for volume in vmi.spec.volumes or []:
        if volume.persistent_volume_claim is not None or volume.data_volume is not None:
            claim = (volume.persistent_volume_claim.claim_name if volume.persistent_volume_claim is not None
                     else (volume.data_volume.name if volume.data_volume is not None else None)) or ""
            info = claims.get(volume.name)
            if info is None:
                return True, message_pvc_unknown(claim)
            if READ_WRITE_MANY not in (info.access_modes or []) and volume.name not in migrated:
                return True, message_pvc_not_shared(claim)
        elif volume.host_disk is not None:
            info = claims.get(volume.name)
            if info is not None:
                if READ_WRITE_MANY not in (info.access_modes or []) and volume.name not in migrated:
                    return True, message_pvc_not_shared(info.claim_name or "")
                continue
            if not volume.host_disk.shared:
                return True, MSG_NON_SHARED_HOST_DISK
        elif volume.name in filesystems or volume.name in read_only:
            continue
        else:
            block = True
    return block, None


def _first_failure(vmi: VirtualMachineInstance, options: MigratabilityOptions,
                   disks_message: str | None) -> tuple[str, str] | None:
    message = check_network(vmi, options.migratable_bindings)
    if message is not None:
        return LiveMigratableReason.INTERFACE_NOT_LIVE_MIGRATABLE.value, message
    cpu = vmi.spec.domain.cpu
    if cpu is not None and cpu.model == CPU_MODE_HOST_MODEL and not options.host_cpu_model:
        node = (vmi.status.node_name if vmi.status is not None else None) or ""
        return LiveMigratableReason.CPU_MODE_NOT_LIVE_MIGRATABLE.value, message_host_model(node)
    message = check_host_devices(vmi, vgpu_live_migration=options.vgpu_live_migration,
                                 mediated_devices=options.mediated_devices)
    if message is not None:
        return LiveMigratableReason.HOST_DEVICE_NOT_LIVE_MIGRATABLE.value, message
    security = _launch_security(vmi)
    if security is not None and (security.get("sev") is not None or security.get("snp") is not None):
        return LiveMigratableReason.SEV_NOT_LIVE_MIGRATABLE.value, MSG_SEV
    if security is not None and security.get("tdx") is not None:
        return TDX_NOT_LIVE_MIGRATABLE, MSG_TDX
    if security is not None and vmi.spec.architecture == S390X:
        return LiveMigratableReason.SECURE_EXECUTION_NOT_LIVE_MIGRATABLE.value, MSG_SECURE_EXECUTION
    if _needs_tsc_for_migration(vmi):
        return LiveMigratableReason.TSC_NOT_LIVE_MIGRATABLE.value, MSG_REENLIGHTENMENT_TSC
    features = vmi.spec.domain.features
    if features is not None and features.hyperv_passthrough is not None and features.hyperv_passthrough.enabled:
        return LiveMigratableReason.HYPERV_PASSTHROUGH_NOT_LIVE_MIGRATABLE.value, MSG_HYPERV_PASSTHROUGH
    if disks_message is not None:
        return LiveMigratableReason.DISKS_NOT_LIVE_MIGRATABLE.value, disks_message
    return None


def compute_migratability(vmi: VirtualMachineInstance,
                          options: MigratabilityOptions = DEFAULT_OPTIONS) -> Migratability:
    """Both answers of KubeVirt's ``calculateLiveMigrationCondition`` for ``vmi`` (a Struct; not
    modified): whether it can live-migrate (first failing check, see module docstring) and the
    migration method."""
    block, disks_message = check_volumes(vmi)
    method = MigrationMethod.BLOCK_MIGRATION.value if block else MigrationMethod.LIVE_MIGRATION.value
    failure = _first_failure(vmi, options, disks_message)
    if failure is None:
        return Migratability(True, None, None, method)
    return Migratability(False, failure[0], failure[1], method)


def compute_live_migratable(vmi: VirtualMachineInstance, options: MigratabilityOptions = DEFAULT_OPTIONS,
                            ) -> tuple[bool, str | None, str | None]:
    """``(live_migratable, reason, message)`` of the ``LiveMigratable`` condition (reason and
    message None when migratable)."""
    result = compute_migratability(vmi, options)
    return result.live_migratable, result.reason, result.message


def compute_live_migratable_condition(vmi: VirtualMachineInstance,
                                      options: MigratabilityOptions = DEFAULT_OPTIONS) -> Condition:
    """The ``LiveMigratable`` :class:`~shared.api.meta.Condition` of ``vmi``."""
    return compute_migratability(vmi, options).as_condition()


def compute_migration_method(vmi: VirtualMachineInstance) -> str:
    """``"BlockMigration"`` when a local volume is copied along, else ``"LiveMigration"``."""
    block, _ = check_volumes(vmi)
    return MigrationMethod.BLOCK_MIGRATION.value if block else MigrationMethod.LIVE_MIGRATION.value

