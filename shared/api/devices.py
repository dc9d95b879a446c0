"""VMI ``spec.domain.devices``: disks, interfaces, inputs, watchdog, rng, GPUs, host devices,
filesystems, sound, TPM, video, panic devices and the auto-attach switches
(source: kubevirt.io/api core/v1 schema.go).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.api.base import ApiStruct, Int32, Int64, Object, UInt64, describe


class DiskTarget(ApiStruct, kw_only=True):
    """A plain disk; ``bus`` is virtio, sata, scsi or usb."""

    bus: str | None = None
    readonly: bool | None = None
    pci_address: str | None = None


class LunTarget(ApiStruct, kw_only=True):
    """A SCSI LUN passed to the guest."""

    bus: str | None = None
    readonly: bool | None = None
    reservation: bool | None = None


class CDRomTarget(ApiStruct, kw_only=True):
    """A CD-ROM drive (read-only by default, tray closed)."""

    bus: str | None = None
    readonly: bool | None = None
    tray: str | None = None


class CustomBlockSize(ApiStruct, kw_only=True):
    """Logical/physical sector sizes in bytes."""

    logical: UInt64 | None = None
    physical: UInt64 | None = None
    discard_granularity: UInt64 | None = None


class BlockSize(ApiStruct, kw_only=True):
    """Custom block sizes or those of the volume."""

    custom: CustomBlockSize | None = None
    match_volume: Object | None = None


class Disk(ApiStruct, kw_only=True):
    """A disk device; ``name`` refers to a volume of the same name."""

    name: Annotated[str, describe("Name of the disk; must match a volume's name.")]
    disk: DiskTarget | None = None
    lun: LunTarget | None = None
    cdrom: CDRomTarget | None = None
    boot_order: UInt64 | None = None
    serial: str | None = None
    dedicated_io_thread: bool | None = msgspec.field(default=None, name="dedicatedIOThread")
    cache: str | None = None
    io: str | None = None
    tag: str | None = None
    block_size: BlockSize | None = None
    shareable: bool | None = None
    error_policy: str | None = None
    changed_block_tracking: bool | None = None


class InterfaceBridge(ApiStruct, kw_only=True):
    """Bridge binding: the guest takes the pod's IP."""


class InterfaceMasquerade(ApiStruct, kw_only=True):
    """Masquerade binding: the guest sits behind NAT on the pod IP."""


class InterfaceSRIOV(ApiStruct, kw_only=True):
    """SR-IOV VF passthrough."""


class InterfaceDiscontinued(ApiStruct, kw_only=True):
    """Bindings discontinued since KubeVirt v1.3 (slirp, macvtap, passt): rejected."""


class InterfacePasstBinding(ApiStruct, kw_only=True):
    """passt binding (core)."""


class PluginBinding(ApiStruct, kw_only=True):
    """A network binding plugin by name."""

    name: str


class Port(ApiStruct, kw_only=True):
    """A port forwarded to a masquerade interface."""

    name: str | None = None
    protocol: str | None = None
    port: Int32


class DHCPPrivateOptions(ApiStruct, kw_only=True):
    """DHCP private option (224..254)."""

    option: Int64
    value: str


class DHCPOptions(ApiStruct, kw_only=True):
    """Extra DHCP options served to the guest."""

    boot_file_name: str | None = None
    tftp_server_name: str | None = None
    ntp_servers: list[str] | None = None
    private_options: list[DHCPPrivateOptions] | None = None


class Interface(ApiStruct, kw_only=True):
    """A guest NIC; ``name`` refers to a network; exactly one binding."""

    name: str
    model: str | None = None
    bridge: InterfaceBridge | None = None
    slirp: InterfaceDiscontinued | None = None
    masquerade: InterfaceMasquerade | None = None
    sriov: InterfaceSRIOV | None = None
    macvtap: InterfaceDiscontinued | None = None
    passt: InterfaceDiscontinued | None = None
    passt_binding: InterfacePasstBinding | None = None
    binding: PluginBinding | None = None
    ports: list[Port] | None = None
    port_ranges: list[Object] | None = None
    mac_address: str | None = None
    boot_order: UInt64 | None = None
    pci_address: str | None = None
    dhcp_options: DHCPOptions | None = None
    tag: str | None = None
    acpi_index: Int64 | None = None
    state: str | None = None


class Input(ApiStruct, kw_only=True):
    """An input device (tablet on usb or virtio)."""

    name: str
    type: str | None = None
    bus: str | None = None


class WatchdogAction(ApiStruct, kw_only=True):
    """Action on watchdog expiry: reset (default), poweroff, shutdown."""

    action: str | None = None


class Watchdog(ApiStruct, kw_only=True):
    """A watchdog device."""

    name: str
    i6300esb: WatchdogAction | None = None
    diag288: WatchdogAction | None = None


class Rng(ApiStruct, kw_only=True):
    """A virtio RNG fed by the host's /dev/urandom."""


class GPU(ApiStruct, kw_only=True):
    """A (v)GPU assigned to the guest."""

    name: str
    device_name: str | None = None
    virtual_gpu_options: Object | None = msgspec.field(default=None, name="virtualGPUOptions")
    tag: str | None = None
    claim_name: str | None = None
    request_name: str | None = None


class HostDevice(ApiStruct, kw_only=True):
    """A host PCI/USB device assigned to the guest."""

    name: str
    device_name: str | None = None
    tag: str | None = None
    claim_name: str | None = None
    request_name: str | None = None


class FilesystemVirtiofs(ApiStruct, kw_only=True):
    """virtiofs share."""


class Filesystem(ApiStruct, kw_only=True):
    """A volume shared into the guest as a filesystem."""

    name: str
    virtiofs: FilesystemVirtiofs | None = None


class SoundDevice(ApiStruct, kw_only=True):
    """A sound card (ich9 or ac97)."""

    name: str
    model: str | None = None


class TPMDevice(ApiStruct, kw_only=True):
    """An emulated TPM."""

    enabled: bool | None = None
    persistent: bool | None = None


class VideoDevice(ApiStruct, kw_only=True):
    """Video adapter type."""

    type: str | None = None


class PanicDevice(ApiStruct, kw_only=True):
    """A panic notifier (hyperv, isa, pvpanic)."""

    model: str | None = None


class DownwardMetrics(ApiStruct, kw_only=True):
    """Expose host metrics to the guest through virtio-serial."""


class ClientPassthroughDevices(ApiStruct, kw_only=True):
    """USB redirection from a client."""


class Devices(ApiStruct, kw_only=True):
    """The guest's devices and the switches for automatically attached ones."""

    disks: Annotated[list[Disk], msgspec.Meta(max_length=256)] | None = None
    interfaces: Annotated[list[Interface], msgspec.Meta(max_length=256)] | None = None
    inputs: list[Input] | None = None
    watchdog: Watchdog | None = None
    rng: Rng | None = None
    gpus: list[GPU] | None = None
    host_devices: list[HostDevice] | None = None
    filesystems: list[Filesystem] | None = None
    sound: SoundDevice | None = None
    tpm: TPMDevice | None = None
    video: VideoDevice | None = None
    panic_devices: list[PanicDevice] | None = None
    downward_metrics: DownwardMetrics | None = None
    client_passthrough: ClientPassthroughDevices | None = None
    autoattach_pod_interface: bool | None = None
    autoattach_graphics_device: bool | None = None
    autoattach_serial_console: bool | None = None
    log_serial_console: bool | None = None
    autoattach_mem_balloon: bool | None = None
    autoattach_input_device: bool | None = None
    autoattach_vsock: bool | None = msgspec.field(default=None, name="autoattachVSOCK")
    block_multi_queue: bool | None = None
    network_interface_multiqueue: bool | None = None
    use_virtio_transitional: bool | None = None
    disable_hotplug: bool | None = None
