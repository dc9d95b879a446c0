"""``<disk>`` elements, one per spec disk in spec order.

Source: KubeVirt converter disk rules (``../shared/docs/kubevirt-api.md`` §7 "Disks"):
target names per bus (``vd*``/``sd*``); ``<driver name='qemu' type cache io error_policy
discard>`` with ``error_policy`` default ``stop`` and ``discard='unmap'`` for disks;
``<alias name='ua-<disk>'>``; virtio disks ``model='virtio-non-transitional'`` (or
``virtio-transitional``); cdroms read-only by default with ``tray``; SCSI disks get a drive
address on controller 0; overlays carry their ``<backingStore>``. Cache mode when unset:
``none`` where O_DIRECT works, else ``writethrough``; explicit ``none`` without O_DIRECT is an error.

kubevirt-py: a ``lun`` is presented as a SCSI ``disk`` because every volume here is a file.
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..errors import DomainConversionError
from ..schema import Address, Alias, BackingStore, Boot, Disk, DiskDriver, DiskSource, DiskTarget, Domain, Format
from ..volumes import VolumePlan, compute_target_names, compute_volume_plans


def compute_cache_mode(plan: VolumePlan, ctx: ConversionContext) -> str:
    """The ``cache`` attribute; raises CacheModeUnsupported for ``none`` without O_DIRECT."""
    wanted = plan.disk.raw.get("cache")
    if wanted == "none" and not ctx.direct_io:
        raise DomainConversionError(
            "CacheModeUnsupported",
            f"{plan.disk.field_path}.cache: 'none' needs O_DIRECT, which the VMI directory's filesystem lacks")
    if wanted:
        return wanted
    return "none" if ctx.direct_io else "writethrough"


def compute_disk(plan: VolumePlan, target: str, scsi_unit: int | None, ctx: ConversionContext,
                 transitional: bool) -> Disk:
    """The ``<disk>`` struct for one planned disk."""
    d = plan.disk
    device = "cdrom" if d.device == "cdrom" else "disk"
    disk = Disk(type="file", device=device)
    if d.bus == "virtio":
        disk.model = "virtio-transitional" if transitional else "virtio-non-transitional"
    disk.driver = DiskDriver(name="qemu", type=plan.format, cache=compute_cache_mode(plan, ctx),
                             io=d.raw.get("io"), error_policy=d.raw.get("errorPolicy") or "stop",
                             discard="unmap" if device == "disk" else None)
    disk.source = DiskSource(file=str(plan.path))
    if plan.backing is not None:
        disk.backing_store = BackingStore(type="file", format=Format(type=plan.backing_format or "raw"),
                                          source=DiskSource(file=str(plan.backing)))
    tray = (d.raw.get("cdrom") or {}).get("tray", "closed") if device == "cdrom" else None
    disk.target = DiskTarget(dev=target, bus=d.bus, tray=tray)
    disk.serial = d.raw.get("serial")
    if d.raw.get("bootOrder"):
        disk.boot = Boot(order=int(d.raw["bootOrder"]))
    disk.readonly = d.readonly
    disk.shareable = bool(d.raw.get("shareable"))
    disk.alias = Alias(name=f"ua-{d.name}")
    if scsi_unit is not None:
        disk.address = Address(type="drive", controller=0, bus=0, target=0, unit=scsi_unit)
    return disk


def configure_disks(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """All disks (see module doc); raises the errors of ``compute_volume_plans``."""
    plans = compute_volume_plans(vmi, ctx)
    targets = compute_target_names(vmi, [p.disk for p in plans])
    transitional = bool(vmi_view.devices(vmi).get("useVirtioTransitional"))
    scsi_unit = 0
    for plan in plans:
        unit = None
        if plan.disk.bus == "scsi":
            unit, scsi_unit = scsi_unit, scsi_unit + 1
        domain.devices.disks.append(compute_disk(plan, targets[plan.disk.name], unit, ctx, transitional))
