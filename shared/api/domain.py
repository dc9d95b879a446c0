"""The VMI ``spec.domain`` (KubeVirt ``DomainSpec``) minus devices: resources, cpu, memory,
machine, firmware, clock, features, chassis (source: kubevirt.io/api core/v1 schema.go).

Devices are in :mod:`shared.api.devices`.
"""

from __future__ import annotations

from typing import Annotated

from shared.api.base import ApiStruct, Int64, Object, Quantity, UInt32, describe
from shared.api.devices import Devices

ResourceList = dict[str, Quantity]


class ResourceRequirements(ApiStruct, kw_only=True):
    """``requests``/``limits`` of cpu, memory, ...; ``overcommitGuestOverhead`` keeps the
    virtualization overhead out of the pod's memory request."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None
    overcommit_guest_overhead: bool | None = None


class CPUFeature(ApiStruct, kw_only=True):
    """A CPU feature and its policy (force, require, optional, disable, forbid)."""

    name: str
    policy: str | None = None


class NUMAGuestMappingPassthrough(ApiStruct, kw_only=True):
    """Mirror the host NUMA topology of dedicated CPUs into the guest."""


class NUMA(ApiStruct, kw_only=True):
    """Guest NUMA settings."""

    guest_mapping_passthrough: NUMAGuestMappingPassthrough | None = None


class Realtime(ApiStruct, kw_only=True):
    """Realtime vCPUs (``mask`` selects them)."""

    mask: str | None = None


class CPU(ApiStruct, kw_only=True):
    """Guest CPU topology and model; vCPUs = sockets x cores x threads."""

    cores: UInt32 | None = None
    sockets: UInt32 | None = None
    max_sockets: Annotated[UInt32 | None, describe("Upper bound of sockets for CPU hotplug.")] = None
    threads: UInt32 | None = None
    model: Annotated[
        str | None, describe("host-model (default), host-passthrough or a named CPU model.")
    ] = None
    features: list[CPUFeature] | None = None
    dedicated_cpu_placement: bool | None = None
    numa: NUMA | None = None
    isolate_emulator_thread: bool | None = None
    realtime: Realtime | None = None


class Hugepages(ApiStruct, kw_only=True):
    """Back guest memory with hugepages of ``pageSize`` (2Mi, 1Gi)."""

    page_size: str | None = None


class Memory(ApiStruct, kw_only=True):
    """Guest memory: ``guest`` is what the guest sees; ``maxGuest`` the hotplug ceiling."""

    hugepages: Hugepages | None = None
    guest: Annotated[Quantity | None, describe("Memory visible to the guest, e.g. 128Mi.")] = None
    max_guest: Quantity | None = None
    reserved_overhead: Object | None = None


class Machine(ApiStruct, kw_only=True):
    """QEMU machine type (``q35`` on amd64)."""

    type: str | None = None


class BIOS(ApiStruct, kw_only=True):
    """Legacy BIOS boot."""

    use_serial: bool | None = None


class EFI(ApiStruct, kw_only=True):
    """UEFI boot; ``secureBoot`` defaults to true and then needs the SMM feature."""

    secure_boot: bool | None = None
    persistent: bool | None = None


class Bootloader(ApiStruct, kw_only=True):
    """Exactly one of ``bios`` or ``efi``."""

    bios: BIOS | None = None
    efi: EFI | None = None


class KernelBootContainer(ApiStruct, kw_only=True):
    """Container image holding the kernel and initrd for a direct kernel boot."""

    image: str
    image_pull_secret: str | None = None
    kernel_path: str | None = None
    initrd_path: str | None = None
    image_pull_policy: str | None = None


class KernelBoot(ApiStruct, kw_only=True):
    """Boot a kernel directly with ``kernelArgs``."""

    kernel_args: str | None = None
    container: KernelBootContainer | None = None


class ACPI(ApiStruct, kw_only=True):
    """ACPI tables provided from volumes (SLIC, MSDM)."""

    slic_name_ref: str | None = None
    msdm_name_ref: str | None = None


class Firmware(ApiStruct, kw_only=True):
    """SMBIOS identity (``uuid``, ``serial``) and how the guest boots."""

    uuid: Annotated[str | None, describe("SMBIOS system UUID of the guest.")] = None
    bootloader: Bootloader | None = None
    serial: str | None = None
    kernel_boot: KernelBoot | None = None
    acpi: ACPI | None = None


class ClockOffsetUTC(ApiStruct, kw_only=True):
    """Guest clock in UTC, optionally shifted by ``offsetSeconds``."""

    offset_seconds: Int64 | None = None


class HPETTimer(ApiStruct, kw_only=True):
    """HPET timer."""

    tick_policy: str | None = None
    present: bool | None = None


class KVMTimer(ApiStruct, kw_only=True):
    """kvmclock timer."""

    present: bool | None = None


class PITTimer(ApiStruct, kw_only=True):
    """PIT timer."""

    tick_policy: str | None = None
    present: bool | None = None


class RTCTimer(ApiStruct, kw_only=True):
    """RTC timer; ``track`` is guest or wall."""

    tick_policy: str | None = None
    present: bool | None = None
    track: str | None = None


class HypervTimer(ApiStruct, kw_only=True):
    """Hyper-V reference clock."""

    present: bool | None = None


class Timer(ApiStruct, kw_only=True):
    """Guest timers."""

    hpet: HPETTimer | None = None
    kvm: KVMTimer | None = None
    pit: PITTimer | None = None
    rtc: RTCTimer | None = None
    hyperv: HypervTimer | None = None


class Clock(ApiStruct, kw_only=True):
    """Guest clock: ``utc`` or ``timezone``, plus timers."""

    utc: ClockOffsetUTC | None = None
    timezone: str | None = None
    timer: Timer | None = None


class FeatureState(ApiStruct, kw_only=True):
    """A switchable feature; present with ``enabled`` unset means enabled."""

    enabled: bool | None = None


class FeatureAPIC(ApiStruct, kw_only=True):
    """APIC, optionally with end-of-interrupt."""

    enabled: bool | None = None
    end_of_interrupt: bool | None = None


class FeatureSpinlocks(ApiStruct, kw_only=True):
    """Hyper-V spinlocks with ``spinlocks`` retries (default 4096)."""

    enabled: bool | None = None
    spinlocks: UInt32 | None = None


class SyNICTimer(ApiStruct, kw_only=True):
    """Hyper-V SyNIC timer."""

    enabled: bool | None = None
    direct: FeatureState | None = None


class FeatureVendorID(ApiStruct, kw_only=True):
    """Hyper-V vendor id string."""

    enabled: bool | None = None
    vendorid: str | None = None


class TLBFlush(ApiStruct, kw_only=True):
    """Hyper-V TLB flush enlightenment."""

    enabled: bool | None = None
    direct: FeatureState | None = None
    extended: FeatureState | None = None


class FeatureHyperv(ApiStruct, kw_only=True):
    """Hyper-V enlightenments for Windows guests."""

    relaxed: FeatureState | None = None
    vapic: FeatureState | None = None
    spinlocks: FeatureSpinlocks | None = None
    vpindex: FeatureState | None = None
    runtime: FeatureState | None = None
    synic: FeatureState | None = None
    synictimer: SyNICTimer | None = None
    reset: FeatureState | None = None
    vendorid: FeatureVendorID | None = None
    frequencies: FeatureState | None = None
    reenlightenment: FeatureState | None = None
    tlbflush: TLBFlush | None = None
    ipi: FeatureState | None = None
    evmcs: FeatureState | None = None


class FeatureKVM(ApiStruct, kw_only=True):
    """Hide the KVM signature from the guest."""

    hidden: bool | None = None


class Features(ApiStruct, kw_only=True):
    """Hypervisor features: acpi (on unless disabled), apic, smm, hyperv, kvm, pvspinlock."""

    acpi: FeatureState | None = None
    apic: FeatureAPIC | None = None
    hyperv: FeatureHyperv | None = None
    smm: FeatureState | None = None
    kvm: FeatureKVM | None = None
    pvspinlock: FeatureState | None = None
    hyperv_passthrough: FeatureState | None = None


class IOThreads(ApiStruct, kw_only=True):
    """Size of the supplemental IOThread pool."""

    supplemental_pool_thread_count: UInt32 | None = None


class Chassis(ApiStruct, kw_only=True):
    """SMBIOS chassis information."""

    manufacturer: str | None = None
    version: str | None = None
    serial: str | None = None
    asset: str | None = None
    sku: str | None = None


class DomainSpec(ApiStruct, kw_only=True):
    """The virtual hardware of a VMI."""

    resources: ResourceRequirements | None = None
    cpu: CPU | None = None
    memory: Memory | None = None
    machine: Machine | None = None
    firmware: Firmware | None = None
    clock: Clock | None = None
    features: Features | None = None
    devices: Devices | None = None
    io_threads_policy: str | None = None
    io_threads: IOThreads | None = None
    chassis: Chassis | None = None
    launch_security: Object | None = None
    reboot_policy: str | None = None
