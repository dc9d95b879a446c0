"""Typed structs mirroring the libvirt domain XML elements kubevirt-py emits.

Owns: one dataclass per libvirt element (names follow https://libvirt.org/formatdomain.html),
with field markers saying whether a value is an attribute, text or child element.
No policy here: configurators decide the values, :mod:`.xmlmodel` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .xmlmodel import KUBEVIRT_NS, QEMU_NS, attr, child, flag, text


# --- small shared elements -------------------------------------------------------------------
@dataclass
class Alias:
    TAG: ClassVar[str] = "alias"
    name: str = attr()


@dataclass
class Boot:
    TAG: ClassVar[str] = "boot"
    order: int = attr()


@dataclass
class Address:
    """``<address type='drive' controller unit>`` (SCSI) or ``type='pci'`` slots."""

    TAG: ClassVar[str] = "address"
    type: str = attr()
    controller: int | None = attr()
    bus: int | None = attr()
    target: int | None = attr()
    unit: int | None = attr()


# --- metadata ---------------------------------------------------------------------------------
@dataclass
class KubevirtMetadata:
    TAG: ClassVar[str] = f"{{{KUBEVIRT_NS}}}kubevirt"
    uid: str | None = child(f"{{{KUBEVIRT_NS}}}uid")
    namespace: str | None = child(f"{{{KUBEVIRT_NS}}}namespace")
    name: str | None = child(f"{{{KUBEVIRT_NS}}}name")


@dataclass
class Metadata:
    TAG: ClassVar[str] = "metadata"
    kubevirt: KubevirtMetadata | None = child()


# --- memory / cpu -----------------------------------------------------------------------------
@dataclass
class Memory:
    TAG: ClassVar[str] = "memory"
    value: int = text()
    unit: str = attr(default="b")


@dataclass
class CurrentMemory(Memory):
    TAG: ClassVar[str] = "currentMemory"


@dataclass
class Vcpu:
    TAG: ClassVar[str] = "vcpu"
    value: int = text()
    placement: str = attr(default="static")


@dataclass
class CPUModel:
    TAG: ClassVar[str] = "model"
    name: str = text()
    fallback: str | None = attr()


@dataclass
class CPUTopology:
    TAG: ClassVar[str] = "topology"
    sockets: int = attr()
    dies: int | None = attr()
    cores: int = attr()
    threads: int = attr()


@dataclass
class CPUFeature:
    TAG: ClassVar[str] = "feature"
    name: str = attr()
    policy: str = attr()


@dataclass
class CPU:
    TAG: ClassVar[str] = "cpu"
    mode: str | None = attr()
    check: str | None = attr()
    model: CPUModel | None = child()
    topology: CPUTopology | None = child()
    features: list[CPUFeature] = child(factory=list)


# --- sysinfo / os / features / clock ----------------------------------------------------------
@dataclass
class SysinfoEntry:
    TAG: ClassVar[str] = "entry"
    name: str = attr()
    value: str = text()


@dataclass
class SysinfoSystem:
    TAG: ClassVar[str] = "system"
    entries: list[SysinfoEntry] = child(factory=list)


@dataclass
class Sysinfo:
    TAG: ClassVar[str] = "sysinfo"
    type: str = attr(default="smbios")
    system: SysinfoSystem | None = child()


@dataclass
class OSType:
    TAG: ClassVar[str] = "type"
    value: str = text(default="hvm")
    arch: str | None = attr()
    machine: str | None = attr()


@dataclass
class Loader:
    TAG: ClassVar[str] = "loader"
    path: str = text()
    readonly: str | None = attr()
    secure: str | None = attr()
    type: str | None = attr()


@dataclass
class Nvram:
    TAG: ClassVar[str] = "nvram"
    path: str = text()
    template: str | None = attr()


@dataclass
class Smbios:
    TAG: ClassVar[str] = "smbios"
    mode: str = attr(default="sysinfo")


@dataclass
class Bios:
    TAG: ClassVar[str] = "bios"
    useserial: str | None = attr()


@dataclass
class BootMenu:
    TAG: ClassVar[str] = "bootmenu"
    enable: str = attr()
    timeout: int | None = attr()


@dataclass
class OS:
    TAG: ClassVar[str] = "os"
    type: OSType = child(factory=OSType)
    loader: Loader | None = child()
    nvram: Nvram | None = child()
    kernel: str | None = child("kernel")
    initrd: str | None = child("initrd")
    cmdline: str | None = child("cmdline")
    bootmenu: BootMenu | None = child()
    smbios: Smbios | None = child()
    bios: Bios | None = child()


@dataclass
class FeatureState:
    """An element with only a ``state`` attribute (``<vmport state='off'/>``, ``<pvspinlock .../>``)."""

    TAG: ClassVar[str] = "state"
    state: str = attr()


@dataclass
class Features:
    TAG: ClassVar[str] = "features"
    acpi: bool = flag()
    apic: bool = flag()
    pae: bool = flag()
    smm: bool = flag()
    pvspinlock: FeatureState | None = child("pvspinlock")
    vmport: FeatureState | None = child("vmport")


@dataclass
class Timer:
    TAG: ClassVar[str] = "timer"
    name: str = attr()
    present: str | None = attr()
    tickpolicy: str | None = attr()
    track: str | None = attr()


@dataclass
class Clock:
    TAG: ClassVar[str] = "clock"
    offset: str = attr(default="utc")
    timezone: str | None = attr()
    adjustment: str | None = attr()
    timers: list[Timer] = child(factory=list)


# --- devices ----------------------------------------------------------------------------------
@dataclass
class DiskDriver:
    TAG: ClassVar[str] = "driver"
    name: str = attr(default="qemu")
    type: str = attr(default="raw")
    cache: str | None = attr()
    io: str | None = attr()
    error_policy: str | None = attr()
    discard: str | None = attr()
    iothread: int | None = attr()


@dataclass
class DiskSource:
    TAG: ClassVar[str] = "source"
    file: str | None = attr()
    dev: str | None = attr()


@dataclass
class Format:
    TAG: ClassVar[str] = "format"
    type: str = attr()


@dataclass
class BackingStore:
    TAG: ClassVar[str] = "backingStore"
    type: str = attr(default="file")
    format: Format | None = child()
    source: DiskSource | None = child()


@dataclass
class DiskTarget:
    TAG: ClassVar[str] = "target"
    dev: str = attr()
    bus: str = attr()
    tray: str | None = attr()


@dataclass
class Disk:
    TAG: ClassVar[str] = "disk"
    type: str = attr(default="file")
    device: str = attr(default="disk")
    model: str | None = attr()
    driver: DiskDriver = child(factory=DiskDriver)
    source: DiskSource | None = child()
    backing_store: BackingStore | None = child()
    target: DiskTarget | None = child()
    serial: str | None = child("serial")
    boot: Boot | None = child()
    readonly: bool = flag()
    shareable: bool = flag()
    alias: Alias | None = child()
    address: Address | None = child()


@dataclass
class Controller:
    TAG: ClassVar[str] = "controller"
    type: str = attr()
    index: int = attr(default=0)
    model: str | None = attr()


@dataclass
class MacAddress:
    TAG: ClassVar[str] = "mac"
    address: str = attr()


@dataclass
class InterfaceModel:
    TAG: ClassVar[str] = "model"
    type: str = attr()


@dataclass
class Rom:
    TAG: ClassVar[str] = "rom"
    enabled: str = attr()


@dataclass
class LinkState:
    TAG: ClassVar[str] = "link"
    state: str = attr()


@dataclass
class Interface:
    TAG: ClassVar[str] = "interface"
    type: str = attr()
    mac: MacAddress | None = child()
    model: InterfaceModel | None = child()
    boot: Boot | None = child()
    rom: Rom | None = child()
    link: LinkState | None = child()
    alias: Alias | None = child()


@dataclass
class Log:
    TAG: ClassVar[str] = "log"
    file: str = attr()
    append: str = attr(default="on")


@dataclass
class SerialTarget:
    TAG: ClassVar[str] = "target"
    port: int = attr(default=0)


@dataclass
class Serial:
    TAG: ClassVar[str] = "serial"
    type: str = attr(default="pty")
    log: Log | None = child()
    target: SerialTarget = child(factory=SerialTarget)
    alias: Alias | None = child()


@dataclass
class ConsoleTarget:
    TAG: ClassVar[str] = "target"
    type: str = attr(default="serial")
    port: int = attr(default=0)


@dataclass
class Console:
    TAG: ClassVar[str] = "console"
    type: str = attr(default="pty")
    target: ConsoleTarget = child(factory=ConsoleTarget)


@dataclass
class ChannelSource:
    TAG: ClassVar[str] = "source"
    mode: str = attr(default="bind")
    path: str | None = attr()


@dataclass
class ChannelTarget:
    TAG: ClassVar[str] = "target"
    type: str = attr(default="virtio")
    name: str = attr()


@dataclass
class Channel:
    TAG: ClassVar[str] = "channel"
    type: str = attr(default="unix")
    source: ChannelSource | None = child()
    target: ChannelTarget | None = child()


@dataclass
class Stats:
    TAG: ClassVar[str] = "stats"
    period: int = attr()


@dataclass
class Memballoon:
    TAG: ClassVar[str] = "memballoon"
    model: str = attr()
    free_page_reporting: str | None = attr("freePageReporting")
    stats: Stats | None = child()


@dataclass
class RngBackend:
    TAG: ClassVar[str] = "backend"
    path: str = text(default="/dev/urandom")
    model: str = attr(default="random")


@dataclass
class Rng:
    TAG: ClassVar[str] = "rng"
    model: str = attr()
    backend: RngBackend = child(factory=RngBackend)


@dataclass
class Input:
    TAG: ClassVar[str] = "input"
    type: str = attr()
    bus: str = attr()
    alias: Alias | None = child()


@dataclass
class Watchdog:
    TAG: ClassVar[str] = "watchdog"
    model: str = attr()
    action: str = attr()
    alias: Alias | None = child()


@dataclass
class Devices:
    TAG: ClassVar[str] = "devices"
    emulator: str | None = child("emulator")
    disks: list[Disk] = child(factory=list)
    controllers: list[Controller] = child(factory=list)
    interfaces: list[Interface] = child(factory=list)
    serials: list[Serial] = child(factory=list)
    consoles: list[Console] = child(factory=list)
    channels: list[Channel] = child(factory=list)
    inputs: list[Input] = child(factory=list)
    watchdog: Watchdog | None = child()
    memballoon: Memballoon | None = child()
    rngs: list[Rng] = child(factory=list)


# --- qemu namespace ---------------------------------------------------------------------------
@dataclass
class QemuArg:
    TAG: ClassVar[str] = f"{{{QEMU_NS}}}arg"
    value: str = attr()


@dataclass
class QemuCommandline:
    """Extra QEMU arguments (``<qemu:commandline>``); used for user-net port forwards."""

    TAG: ClassVar[str] = f"{{{QEMU_NS}}}commandline"
    args: list[QemuArg] = child(factory=list)


# --- the domain -------------------------------------------------------------------------------
@dataclass
class Domain:
    TAG: ClassVar[str] = "domain"
    type: str = attr()
    name: str = child("name")
    uuid: str | None = child("uuid")
    metadata: Metadata | None = child()
    memory: Memory | None = child()
    current_memory: CurrentMemory | None = child()
    vcpu: Vcpu | None = child()
    sysinfo: Sysinfo | None = child()
    os: OS = child(factory=OS)
    features: Features = child(factory=Features)
    cpu: CPU | None = child()
    clock: Clock | None = child()
    on_poweroff: str | None = child("on_poweroff")
    on_reboot: str | None = child("on_reboot")
    on_crash: str | None = child("on_crash")
    devices: Devices = child(factory=Devices)
    qemu_commandline: QemuCommandline | None = child()
