"""Where each disk's bytes come from: the volume plan shared by conversion and preparation.

Owns: :func:`compute_volume_plans` mapping every disk of a VMI to the file the domain
opens (and what must be created for it), and :func:`compute_target_names` (KubeVirt's
per-bus device names). :mod:`.preparation` creates the files, :mod:`.configurators.disks`
writes the ``<disk>`` elements; both read the same plan so they cannot disagree.

Rules (KubeVirt, ``../shared/docs/kubevirt-api.md`` §7 "Disks"):
containerDisk -> qcow2 overlay in the VMI dir over the image's disk; ephemeral PVC -> qcow2
overlay over the PVC's ``disk.img``; emptyDisk -> sparse qcow2 of the capacity;
hostDisk -> raw file at the path (created sparse for DiskOrCreate); PVC / DataVolume ->
``<pvc-root>/<namespace>/<claim>/disk.img`` in the format its first bytes say (the local
provisioner makes qcow2; KubeVirt's own PVC disks are raw); cloud-init -> raw ISO in the VMI dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.images import ImageNotFound, detect_disk_format

from . import vmi_view
from .context import ConversionContext
from .errors import DomainConversionError
from .quantity import parse_quantity

NOCLOUD_ISO = "noCloud.iso"
CONFIGDRIVE_ISO = "configdrive.iso"


@dataclass(frozen=True)
class VolumePlan:
    """One disk's backing.

    ``path``: the file QEMU opens; ``format``: "raw" | "qcow2"; ``backing``/``backing_format``:
    the read-only base of an overlay; ``create``: what preparation makes ("overlay", "empty",
    "hostdisk", "nocloud", "configdrive" or None); ``capacity``: bytes for created disks;
    ``owned``: the file belongs to the VMI and is removed at cleanup.
    """

    disk: vmi_view.DiskSpec
    volume: dict
    source: str
    path: Path
    format: str
    backing: Path | None = None
    backing_format: str | None = None
    create: str | None = None
    capacity: int | None = None
    owned: bool = False


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (KubeVirt's FormatDeviceName)."""
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def compute_target_names(vmi: dict, disks: list[vmi_view.DiskSpec]) -> dict[str, str]:
    """``disk name -> target dev``: ``vd*`` for virtio, ``sd*`` for sata/scsi/usb, next free
    letter in disk order; names recorded in ``status.volumeStatus[].target`` are kept."""
    prefix_of = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd"}
    recorded = {vs["name"]: vs["target"] for vs in (vmi.get("status") or {}).get("volumeStatus") or []
                if vs.get("target")}
    used = set(recorded.values())
    names: dict[str, str] = {}
    for d in disks:
        prefix = prefix_of.get(d.bus)
        if prefix is None:
            raise DomainConversionError("InvalidSpec", f"{d.field_path}.{d.device}.bus: unsupported bus {d.bus!r}")
        if d.name in recorded and recorded[d.name].startswith(prefix):
            names[d.name] = recorded[d.name]
            continue
        i = 0
        while prefix + _letters(i) in used:
            i += 1
        names[d.name] = prefix + _letters(i)
        used.add(names[d.name])
    return names


def _resolve_image(ctx: ConversionContext, ref: str, field_path: str):
    if ctx.images is None:
        raise DomainConversionError("ErrImagePull", f"{field_path}: no image store to resolve {ref!r}")
    try:
        return ctx.images.resolve(ref)
    except ImageNotFound as exc:
        raise DomainConversionError("ErrImagePull", f"{field_path}: {exc.message}") from exc


def pvc_disk_path(ctx: ConversionContext, namespace: str, claim: str) -> Path:
    """``<pvc_root>/<namespace>/<claim>/disk.img`` (a filesystem PVC's disk, as KubeVirt names it)."""
    return ctx.pvc_root / namespace / claim / "disk.img"


def _pvc(ctx: ConversionContext, vmi: dict, claim: str, field_path: str) -> Path:
    path = pvc_disk_path(ctx, vmi_view.namespace_of(vmi), claim)
    if ctx.domain_type != "test" and not path.is_file():
        raise DomainConversionError(
            "FailedPvcNotFound", f"{field_path}: PersistentVolumeClaim {claim!r} not found (no {path})")
    return path


def pvc_disk_format(path: Path) -> str:
    """``"qcow2"`` when the claim's ``disk.img`` starts with the qcow2 magic, else ``"raw"``
    (also when it does not exist: the test driver needs no host file)."""
    try:
        return detect_disk_format(path)
    except OSError:
        return "raw"


def compute_volume_plans(vmi: dict, ctx: ConversionContext) -> list[VolumePlan]:
    """The plan for every disk in spec order.

    Raises DomainConversionError: ``InvalidSpec`` (disk without volume), ``ErrImagePull``
    (image not stored), ``FailedPvcNotFound``, ``HostDiskNotFound``, ``UnsupportedVolume``.
    With ``domain_type == "test"`` host files are not required to exist.
    """
    volumes = vmi_view.volume_by_name(vmi)
    plans = []
    for disk in vmi_view.disk_specs(vmi):
        if disk.name not in volumes:
            raise DomainConversionError("InvalidSpec", f"{disk.field_path}.name: no volume named {disk.name!r}")
        vi, volume = volumes[disk.name]
        plans.append(_plan_one(vmi, ctx, disk, vi, volume))
    return plans


def _plan_one(vmi: dict, ctx: ConversionContext, disk: vmi_view.DiskSpec, vi: int, volume: dict) -> VolumePlan:
    fp = f"spec.volumes[{vi}]"
    name = volume["name"]
    if "containerDisk" in volume:
        cd = volume["containerDisk"]
        image = _resolve_image(ctx, cd.get("image", ""), f"{fp}.containerDisk.image")
        base = image.path(cd["path"]) if cd.get("path") else image.disk
        base_format = detect_disk_format(base) if cd.get("path") else image.disk_format
        if base is None:
            raise DomainConversionError("ErrImagePull", f"{fp}.containerDisk.image: {image.ref} contains no disk")
        return VolumePlan(disk, volume, "containerDisk", ctx.vmi_dir / f"disk-{name}.qcow2", "qcow2",
                          backing=base, backing_format=base_format, create="overlay", owned=True)
    if "ephemeral" in volume:
        claim = volume["ephemeral"]["persistentVolumeClaim"]["claimName"]
        base = _pvc(ctx, vmi, claim, f"{fp}.ephemeral.persistentVolumeClaim.claimName")
        return VolumePlan(disk, volume, "ephemeral", ctx.vmi_dir / f"disk-{name}.qcow2", "qcow2",
                          backing=base, backing_format=pvc_disk_format(base), create="overlay", owned=True)
    if "emptyDisk" in volume:
        capacity = parse_quantity(volume["emptyDisk"].get("capacity", ""), f"{fp}.emptyDisk.capacity")
        return VolumePlan(disk, volume, "emptyDisk", ctx.vmi_dir / f"empty-{name}.qcow2", "qcow2",
                          create="empty", capacity=capacity, owned=True)
    if "hostDisk" in volume:
        hd = volume["hostDisk"]
        path = Path(hd["path"])
        kind = hd.get("type", "Disk")
        if kind == "DiskOrCreate":
            capacity = parse_quantity(hd.get("capacity", "0"), f"{fp}.hostDisk.capacity")
            return VolumePlan(disk, volume, "hostDisk", path, "raw", create="hostdisk", capacity=capacity)
        if ctx.domain_type != "test" and not path.is_file():
            raise DomainConversionError("HostDiskNotFound", f"{fp}.hostDisk.path: {path} does not exist")
        return VolumePlan(disk, volume, "hostDisk", path, "raw")
    if "persistentVolumeClaim" in volume:
        claim = volume["persistentVolumeClaim"]["claimName"]
        path = _pvc(ctx, vmi, claim, f"{fp}.persistentVolumeClaim.claimName")
        return VolumePlan(disk, volume, "persistentVolumeClaim", path, pvc_disk_format(path))
    if "dataVolume" in volume:
        # CDI names the PVC after the DataVolume
        claim = volume["dataVolume"]["name"]
        path = _pvc(ctx, vmi, claim, f"{fp}.dataVolume.name")
        return VolumePlan(disk, volume, "dataVolume", path, pvc_disk_format(path))
    if "cloudInitNoCloud" in volume:
        return VolumePlan(disk, volume, "cloudInitNoCloud", ctx.vmi_dir / NOCLOUD_ISO, "raw",
                          create="nocloud", owned=True)
    if "cloudInitConfigDrive" in volume:
        return VolumePlan(disk, volume, "cloudInitConfigDrive", ctx.vmi_dir / CONFIGDRIVE_ISO, "raw",
                          create="configdrive", owned=True)
    source = next((k for k in volume if k != "name"), "<none>")
    raise DomainConversionError("UnsupportedVolume",
                                f"{fp}: volume source {source!r} is not supported by kubevirt-py")
