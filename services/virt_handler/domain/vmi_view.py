"""Read-only accessors over a VMI dict with the defaults the converter relies on.

Owns: finding spec sections with KubeVirt's defaults applied where admission may
not have run (disk bus, a disk for every volume when no disks are listed, the
default pod interface). Source of defaults: KubeVirt ``pkg/defaults`` and the VMI
mutating webhook (``../shared/docs/kubevirt-api.md`` §6.1).
"""

from __future__ import annotations

from dataclasses import dataclass


def spec(vmi: dict) -> dict:
    return vmi.get("spec") or {}


def domain_spec(vmi: dict) -> dict:
    return spec(vmi).get("domain") or {}


def devices(vmi: dict) -> dict:
    return domain_spec(vmi).get("devices") or {}


def metadata(vmi: dict) -> dict:
    return vmi.get("metadata") or {}


def namespace_of(vmi: dict) -> str:
    return metadata(vmi).get("namespace") or "default"


def name_of(vmi: dict) -> str:
    return metadata(vmi).get("name") or ""


def is_enabled(value: bool | None, default: bool) -> bool:
    """KubeVirt's pointer-bool toggles: None means the default."""
    return default if value is None else bool(value)


# KubeVirt pkg/defaults: amd64 defaults every disk kind to SATA (supported by any guest OS
# without drivers); arm64/s390x use virtio for disks and SCSI for cdrom/lun.
DEFAULT_BUS = {
    "amd64": {"disk": "sata", "lun": "sata", "cdrom": "sata"},
    "arm64": {"disk": "virtio", "lun": "scsi", "cdrom": "scsi"},
    "s390x": {"disk": "virtio", "lun": "scsi", "cdrom": "scsi"},
}


@dataclass(frozen=True)
class DiskSpec:
    """One ``spec.domain.devices.disks[i]`` with its device kind and bus resolved."""

    index: int
    raw: dict
    name: str
    device: str  # disk | lun | cdrom
    bus: str
    readonly: bool

    @property
    def field_path(self) -> str:
        return f"spec.domain.devices.disks[{self.index}]"


def disk_specs(vmi: dict) -> list[DiskSpec]:
    """The disks in spec order; with no disks listed, one ``disk: {}`` per volume (KubeVirt's
    ``SetDefaultVolumeDisk``). Bus defaults per architecture: :data:`DEFAULT_BUS`."""
    defaults = DEFAULT_BUS.get(spec(vmi).get("architecture") or "amd64", DEFAULT_BUS["amd64"])
    raw_disks = list(devices(vmi).get("disks") or [])
    if not raw_disks:
        raw_disks = [{"name": v["name"], "disk": {}} for v in spec(vmi).get("volumes") or []]
    result = []
    for i, d in enumerate(raw_disks):
        device = next((k for k in ("disk", "lun", "cdrom") if k in d), "disk")
        target = d.get(device) or {}
        readonly = bool(target.get("readonly", device == "cdrom"))
        result.append(DiskSpec(index=i, raw=d, name=d["name"], device=device,
                               bus=target.get("bus") or defaults[device], readonly=readonly))
    return result


def volume_by_name(vmi: dict) -> dict[str, tuple[int, dict]]:
    """``volume name -> (index, volume)``."""
    return {v["name"]: (i, v) for i, v in enumerate(spec(vmi).get("volumes") or [])}


def pod_interfaces(vmi: dict) -> list[tuple[int, dict, dict]]:
    """``(index, interface, network)`` triples; with no interfaces and no networks and
    ``autoattachPodInterface`` not false, KubeVirt's default ``default`` masquerade
    interface on the pod network."""
    interfaces = list(devices(vmi).get("interfaces") or [])
    networks = list(spec(vmi).get("networks") or [])
    if not interfaces and not networks and is_enabled(devices(vmi).get("autoattachPodInterface"), True):
        interfaces = [{"name": "default", "masquerade": {}}]
        networks = [{"name": "default", "pod": {}}]
    by_name = {n["name"]: n for n in networks}
    return [(i, iface, by_name.get(iface["name"], {})) for i, iface in enumerate(interfaces)]
