"""VMI disk and volume rules (kubevirt-api.md §6.3 rules 1-26; KubeVirt
pkg/storage/admitters/disks.go and pkg/virt-api/webhooks/validating-webhook/admitters/
vmi-create-admitter.go). Every rule is ``check_*(spec, path, cluster) -> list[StatusCause]``
with ``path`` the JSON path of ``spec`` (``spec`` or ``spec.template.spec``)."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, duplicate, forbidden, invalid_value, not_found, not_supported, required
from shared.admission.naming import dns1123_label_error, is_dns1123_label
from shared.api.volumes import VOLUME_SOURCE_FIELDS
from shared.errors import StatusCause

DISK_BUSES = ("virtio", "scsi", "sata", "usb")
DISK_TARGETS = ("disk", "lun", "cdrom")
CACHE_MODES = ("none", "writethrough", "writeback")
IO_MODES = ("native", "threads")
ERROR_POLICIES = ("stop", "ignore", "report", "enospace")
CLOUD_INIT_DATA_LIMIT = 2048
SERIAL_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")
SERIAL_MAX = 256
PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
BLOCK_SIZE_MIN = 512
BLOCK_SIZE_MAX = 2 * 2**20
HOST_DISK_TYPES = ("Disk", "DiskOrCreate")
SINGLETON_SOURCES = {"serviceAccount": "serviceAccount", "downwardMetrics": "downwardMetrics",
                     "memoryDump": "memoryDump"}


def _disks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return ((spec.get("domain") or {}).get("devices") or {}).get("disks") or []


def _disk_path(path: str, i: int, *rest: str) -> str:
    return at(path, "domain", "devices", "disks", i, *rest)


def _target(disk: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    for name in DISK_TARGETS:
        if name in disk:
            return name, disk[name]
    return None, {}


def check_disk_names(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Disk names are DNS-1123 labels and unique (rules 1, 3)."""
    causes: list[StatusCause] = []
    seen: dict[str, int] = {}
    for i, disk in enumerate(_disks(spec)):
        name = disk.get("name", "")
        if not is_dns1123_label(name):
            causes.append(invalid_value(_disk_path(path, i, "name"), f"Invalid value: {name!r}: "
                                                                     f"{dns1123_label_error(name)}"))
        if name in seen:
            causes.append(duplicate(
                _disk_path(path, i, "name"),
                f"{_disk_path(path, seen[name])} and {_disk_path(path, i)} must not have the same Name.",
            ))
        else:
            seen[name] = i
    return causes


def check_disk_targets(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """At most one of disk/lun/cdrom; buses known and not ide; no virtio CD-ROM; no read-only
    SATA disk; PCI addresses only on virtio and well formed; LUNs only on PVC/DataVolume (rules 2, 9-13, 19)."""
    causes: list[StatusCause] = []
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for i, disk in enumerate(_disks(spec)):
        targets = [t for t in DISK_TARGETS if t in disk]
        if len(targets) > 1:
            causes.append(invalid_value(_disk_path(path, i), f"{_disk_path(path, i)} can only have a single target "
                                                             "type defined"))
            continue
        kind, target = _target(disk)
        if kind is None:
            continue
        bus = target.get("bus")
        bus_field = _disk_path(path, i, kind, "bus")
        if bus == "ide":
            causes.append(not_supported(bus_field, "IDE bus is not supported"))
        elif bus and bus not in DISK_BUSES:
            causes.append(not_supported(bus_field, f"{bus_field} is set with an unrecognized bus {bus}, must be one "
                                                   f"of: [{' '.join(DISK_BUSES)}]"))
        if kind == "cdrom" and bus == "virtio":
            causes.append(not_supported(bus_field, "Bus type virtio is invalid for CD-ROM device"))
        if kind == "disk" and bus == "sata" and target.get("readonly") is True:
            causes.append(not_supported(_disk_path(path, i, kind, "readonly"), "sata hard-disks do not support "
                                                                               "read-only."))
        pci = target.get("pciAddress") if kind == "disk" else None
        if pci is not None:
            pci_field = _disk_path(path, i, kind, "pciAddress")
            if bus not in ("virtio", None):
                causes.append(invalid_value(pci_field, "setting a PCI address is only possible with bus type virtio."))
            elif not PCI_ADDRESS.match(pci):
                causes.append(invalid_value(pci_field, f"{pci_field} has malformed PCI address ({pci})."))
        if kind == "lun":
            volume = volumes.get(disk.get("name")) or {}
            if volume and not ("persistentVolumeClaim" in volume or "dataVolume" in volume):
                causes.append(invalid_value(
                    _disk_path(path, i, "lun"),
                    f"{_disk_path(path, i, 'lun')} can only be mapped to a DataVolume or PersistentVolumeClaim volume.",
                ))
    return causes


def check_disk_options(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """IO threads only on virtio; serial characters and length; cache, io and error policy
    values; custom block sizes (rules 12, 15-18)."""
    causes: list[StatusCause] = []
    for i, disk in enumerate(_disks(spec)):
        kind, target = _target(disk)
        bus = target.get("bus")
        if disk.get("dedicatedIOThread") and bus not in ("virtio", None):
            causes.append(invalid_value(
                _disk_path(path, i, "dedicatedIOThread"), f"IOThreads are not supported for disks on a {bus} bus"
            ))
        serial = disk.get("serial")
        if serial is not None:
            if len(serial) > SERIAL_MAX:
                causes.append(invalid_value(_disk_path(path, i, "serial"), f"{_disk_path(path, i, 'serial')} must be "
                                                                           f"less than or equal to {SERIAL_MAX} in "
                                                                           "length, if specified"))
            elif not SERIAL_PATTERN.match(serial):
                causes.append(invalid_value(_disk_path(path, i, "serial"), f"{_disk_path(path, i, 'serial')} must be "
                                                                           "made up of the following characters "
                                                                           "[A-Za-z0-9_.+-], if specified"))
        for key, allowed, text in (
            ("cache", CACHE_MODES, "has invalid value"),
            ("io", IO_MODES, "has invalid value"),
            ("errorPolicy", ERROR_POLICIES, "has invalid value"),
        ):
            value = disk.get(key)
            if value is not None and value not in allowed:
                field = _disk_path(path, i, key)
                causes.append(not_supported(field, f"{field} {text} {value}, must be one of: [{' '.join(allowed)}]"))
        causes.extend(_check_block_size(disk, _disk_path(path, i, "blockSize", "custom"), bus))
    return causes


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _check_block_size(disk: dict[str, Any], field: str, bus: str | None) -> list[StatusCause]:
    custom = (disk.get("blockSize") or {}).get("custom")
    if not custom:
        return []
    causes: list[StatusCause] = []
    sizes = {k: custom.get(k) for k in ("logical", "physical")}
    for key, size in sizes.items():
        if size is None:
            continue
        if size < BLOCK_SIZE_MIN or size > BLOCK_SIZE_MAX or not _is_power_of_two(size):
            causes.append(invalid_value(
                at(field, key),
                f"{key} size {size} must be a power of two between {BLOCK_SIZE_MIN} and {BLOCK_SIZE_MAX} bytes",
            ))
    if not causes and sizes["logical"] and sizes["physical"] and sizes["logical"] > sizes["physical"]:
        causes.append(invalid_value(at(field, "logical"), "logical size must not be greater than physical size"))
    if bus == "sata" and sizes["logical"] not in (None, BLOCK_SIZE_MIN):
        causes.append(invalid_value(at(field, "logical"), "sata disks only support a logical block size of "
                                                          f"{BLOCK_SIZE_MIN}"))
    return causes


def check_boot_order(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Boot orders are >= 1 and unique across disks and interfaces (rule 14)."""
    causes: list[StatusCause] = []
    devices = (spec.get("domain") or {}).get("devices") or {}
    owners: dict[int, str] = {}
    entries = [("disks", d) for d in devices.get("disks") or []] + [
        ("interfaces", n) for n in devices.get("interfaces") or []
    ]
    counters = {"disks": 0, "interfaces": 0}
    for group, device in entries:
        index = counters[group]
        counters[group] += 1
        order = device.get("bootOrder")
        if order is None:
            continue
        field = at(path, "domain", "devices", group, index, "bootOrder")
        if order < 1:
            causes.append(invalid_value(field, f"{field} must have a boot order > 0, if supplied"))
        elif order in owners:
            causes.append(duplicate(field, f"Boot order for {field} already set for a different device."))
        else:
            owners[order] = field
    return causes


def check_disks_have_volumes(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Every disk refers to a volume of the same name (rule 4)."""
    names = {v.get("name") for v in spec.get("volumes") or []}
    return [
        not_found(_disk_path(path, i, "name"), f"{_disk_path(path, i, 'name')} '{disk.get('name')}' not found. "
                  f"Add a volume named '{disk.get('name')}' to {at(path, 'volumes')} or remove the disk.")
        for i, disk in enumerate(_disks(spec))
        if disk.get("name") not in names
    ]


def check_volumes_have_disks(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Every volume is used by a disk or a filesystem, except memoryDump volumes (rule 5; the
    path is ``volumes[i].name``, where KubeVirt writes ``domain.volumes[i].name``)."""
    devices = (spec.get("domain") or {}).get("devices") or {}
    used = {d.get("name") for d in devices.get("disks") or []} | {
        f.get("name") for f in devices.get("filesystems") or []
    }
    return [
        not_found(at(path, "volumes", i, "name"), f"{at(path, 'volumes', i, 'name')} '{volume.get('name')}' not found. "
                                                  "Add a disk named "
                  f"'{volume.get('name')}' to {at(path, 'domain', 'devices', 'disks')} or remove the volume.")
        for i, volume in enumerate(spec.get("volumes") or [])
        if volume.get("name") not in used and "memoryDump" not in volume
    ]


def check_volume_names_and_sources(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Volume names unique; exactly one source each; at most one serviceAccount,
    downwardMetrics and memoryDump volume (rules 6, 7, 24)."""
    causes: list[StatusCause] = []
    seen: dict[str, int] = {}
    singletons: dict[str, int] = {}
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name", "")
        if name in seen:
            causes.append(duplicate(
                at(path, "volumes", i, "name"),
                f"{at(path, 'volumes', seen[name])} and {at(path, 'volumes', i)} must not have the same Name.",
            ))
        else:
            seen[name] = i
        sources = [s for s in VOLUME_SOURCE_FIELDS if s in volume]
        if len(sources) != 1:
            causes.append(invalid_value(at(path, "volumes", i), f"{at(path, 'volumes', i)} must have exactly one "
                                                                "source type set"))
        for source in sources:
            if source in SINGLETON_SOURCES:
                singletons[source] = singletons.get(source, 0) + 1
                if singletons[source] == 2:
                    causes.append(invalid_value(at(path, "volumes", i), f"{at(path, 'volumes')} must have max one "
                                                                        f"{source} volume set"))
    return causes


def check_volume_sources(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Per-source rules: dataVolume name; containerDisk image and path; hostDisk path, type,
    capacity and gate; secret/configMap/serviceAccount names; downwardMetrics on a virtio disk
    (rules 8, 22, 23, 25, 26)."""
    causes: list[StatusCause] = []
    disks = {d.get("name"): d for d in _disks(spec)}
    for i, volume in enumerate(spec.get("volumes") or []):
        vpath = at(path, "volumes", i)
        if "dataVolume" in volume and not volume["dataVolume"].get("name"):
            causes.append(required(at(vpath, "dataVolume", "name"), "DataVolume 'name' must be set"))
        container_disk = volume.get("containerDisk")
        if container_disk is not None:
            causes.extend(_check_container_disk(container_disk, at(vpath, "containerDisk")))
        host_disk = volume.get("hostDisk")
        if host_disk is not None:
            causes.extend(_check_host_disk(host_disk, at(vpath, "hostDisk"), cluster))
        for source, key in (("secret", "secretName"), ("configMap", "name"), ("serviceAccount", "serviceAccountName")):
            if source in volume and not volume[source].get(key):
                causes.append(required(at(vpath, source, key), f"{at(vpath, source, key)} is a required field"))
        if "downwardMetrics" in volume:
            kind, target = _target(disks.get(volume.get("name"), {}))
            if kind is not None and (kind != "disk" or target.get("bus") not in ("virtio", None)):
                causes.append(invalid_value(vpath, "DownwardMetrics volume must be mapped to a disk with virtio bus"))
    return causes


def _check_container_disk(source: dict[str, Any], field: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if not source.get("image"):
        causes.append(required(at(field, "image"), f"{at(field, 'image')} is a required field"))
    disk_path = source.get("path")
    if disk_path is not None:
        if disk_path == "/" or posixpath.normpath(disk_path) == "/":
            causes.append(invalid_value(at(field, "path"), f"{at(field, 'path')} must not point to root"))
        elif not disk_path.startswith("/") or ".." in disk_path.split("/"):
            causes.append(invalid_value(at(field, "path"), f"{at(field, 'path')} must be an absolute path to a file "
                                                           "without relative components"))
    return causes


def _check_host_disk(source: dict[str, Any], field: str, cluster: ClusterConfig) -> list[StatusCause]:
    if not cluster.is_enabled("HostDisk"):
        return [forbidden(field, "HostDisk feature gate is not enabled")]
    causes: list[StatusCause] = []
    if not source.get("path"):
        causes.append(required(at(field, "path"), f"{at(field, 'path')} is required"))
    kind = source.get("type")
    if kind not in HOST_DISK_TYPES:
        causes.append(not_supported(at(field, "type"), f"{at(field, 'type')} has invalid value '{kind}', allowed are "
                                                       f"'{HOST_DISK_TYPES[0]}' or '{HOST_DISK_TYPES[1]}'"))
    elif kind == "Disk" and source.get("capacity") is not None:
        causes.append(invalid_value(at(field, "capacity"), f"{at(field, 'capacity')} is allowed only for "
                                                           f"'{HOST_DISK_TYPES[1]}' type"))
    return causes


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_cloud_init(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """cloud-init sources: one user data and one network data source at most, at least one of
    either, valid base64, inline data at most 2048 bytes (rules 20, 21)."""
    causes: list[StatusCause] = []
    for i, volume in enumerate(spec.get("volumes") or []):
        for source in ("cloudInitNoCloud", "cloudInitConfigDrive"):
            data = volume.get(source)
            if data is None:
                continue
            field = at(path, "volumes", i, source)
            user = [k for k in ("userData", "userDataBase64", "secretRef") if data.get(k) not in (None, "")]
            network = [k for k in ("networkData", "networkDataBase64", "networkDataSecretRef")
                       if data.get(k) not in (None, "")]
            if len(user) > 1:
                causes.append(invalid_value(field, f"{field} must have only one userdatasource set."))
            if len(network) > 1:
                causes.append(invalid_value(field, f"{field} must have only one networkdatasource set."))
            if not user and not network:
                causes.append(required(field, f"{field} must have at least one userdatasource or one networkdatasource "
                                              "set."))
            for kind, inline, encoded in (("userdata", "userData", "userDataBase64"),
                                          ("networkdata", "networkData", "networkDataBase64")):
                size = len(data.get(inline, "").encode())
                if data.get(encoded):
                    if not _is_base64(data[encoded]):
                        causes.append(invalid_value(at(field, encoded), f"{at(field, encoded)} is not a valid base64 "
                                                                        "value."))
                        continue
                    size = len(base64.b64decode(data[encoded]))
                if size > CLOUD_INIT_DATA_LIMIT:
                    secret_ref = "UserDataSecretRef" if kind == "userdata" else "NetworkDataSecretRef"
                    causes.append(invalid_value(
                        field,
                        f"{field} {kind} exceeds {CLOUD_INIT_DATA_LIMIT} byte limit. Should use {secret_ref} for "
                        "larger data.",
                    ))
    return causes


STORAGE_RULES = (
    check_disk_names,
    check_disk_targets,
    check_disk_options,
    check_boot_order,
    check_disks_have_volumes,
    check_volumes_have_disks,
    check_volume_names_and_sources,
    check_volume_sources,
    check_cloud_init,
)
