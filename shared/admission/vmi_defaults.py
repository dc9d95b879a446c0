"""KubeVirt's create-time defaults for a VMI spec and status (the VMI mutating webhook,
kubevirt-api.md §6.1, pkg/virt-api/webhooks/mutating-webhook/mutators/vmi-mutator.go and
pkg/defaults).

Pure: takes a spec dict, returns a new one. Randomness (the firmware UUID) comes from an
injectable ``new_uuid``. Steps not applied here: presets (deprecated), Hyper-V dependency
filling, the PCI-topology annotation, ``runtimeUser`` and the foreground-delete finalizer
(the VMI controller of kubevirt-py does not need it).

One difference from KubeVirt, made so that a forgotten disk is reported instead of silently
added: a disk is added for every volume lacking one only when the spec lists no disks and no
filesystems at all (KubeVirt's ``vmi-sata.yaml``/``vm-cirros-sata.yaml`` case). When some disks
are listed, a volume without a disk is rejected by validation (``spec.volumes[i].name``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.api.quantity import format_bytes, to_bytes, to_cores

MAX_VCPUS = 512
"""KubeVirt caps hotplug ceilings so that sockets x cores x threads <= 512."""

MEMORY_HOTPLUG_MIN_BYTES = 2**30
"""Memory hotplug needs at least 1Gi of guest memory (KubeVirt user guide)."""

FEATURE_STATE_KEYS = ("acpi", "apic", "smm", "pvspinlock", "hypervPassthrough")
HYPERV_FEATURE_KEYS = (
    "relaxed", "vapic", "spinlocks", "vpindex", "runtime", "synic", "synictimer", "reset",
    "vendorid", "frequencies", "reenlightenment", "tlbflush", "ipi", "evmcs",
)
DEFAULT_SPINLOCK_RETRIES = 4096
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
DISK_TARGETS = ("disk", "lun", "cdrom")


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-ready data (dicts, lists, scalars); much faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


FIRMWARE_UUID_NAMESPACE = uuid.UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895")
"""KubeVirt's UUIDv5 namespace for firmware UUIDs derived from a VM name (kubevirt-api.md §4)."""


def compute_stable_firmware_uuid(vm_name: str) -> str:
    """The firmware UUID KubeVirt's VM controller gives a VMI whose template has none: a
    UUIDv5 (SHA-1) of the VM name in :data:`FIRMWARE_UUID_NAMESPACE`, stable across restarts."""
    return str(uuid.uuid5(FIRMWARE_UUID_NAMESPACE, vm_name))


def _new_uuid() -> str:
    return str(uuid.uuid4())


def compute_image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image without digest, else ``IfNotPresent``
    (Kubernetes' rule, applied by KubeVirt to containerDisks)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _child(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def compute_guest_memory(domain: dict[str, Any]) -> str | None:
    """``memory.guest`` if set, else ``requests.memory``, else ``limits.memory``, else the
    hugepage size (KubeVirt's ``setGuestMemory``)."""
    memory = domain.get("memory") or {}
    if memory.get("guest") is not None:
        return str(memory["guest"])
    resources = domain.get("resources") or {}
    for source in (resources.get("requests") or {}, resources.get("limits") or {}):
        if source.get("memory") is not None:
            return str(source["memory"])
    page_size = (memory.get("hugepages") or {}).get("pageSize")
    return None if page_size is None else str(page_size)


def _apply_resources(domain: dict[str, Any]) -> None:
    resources = domain.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if "cpu" in limits and "cpu" not in requests:
        _child(_child(domain, "resources"), "requests")["cpu"] = limits["cpu"]
    guest = compute_guest_memory(domain)
    if guest is not None:
        _child(domain, "memory")["guest"] = guest


def _apply_cpu(domain: dict[str, Any], cluster: ClusterConfig) -> None:
    cpu = _child(domain, "cpu")
    if not any(cpu.get(k) for k in ("cores", "sockets", "threads")):
        resources = domain.get("resources") or {}
        cpu_quantity = (resources.get("limits") or {}).get("cpu") or (resources.get("requests") or {}).get("cpu")
        cpu["sockets"] = max(1, to_cores(cpu_quantity)) if cpu_quantity is not None else 1
        cpu["cores"] = 1
        cpu["threads"] = 1
    else:
        for key in ("cores", "sockets", "threads"):
            if not cpu.get(key):
                cpu[key] = 1
    cpu.setdefault("model", cluster.cpu_model)


def _apply_hotplug_ceilings(spec: dict[str, Any], cluster: ClusterConfig) -> None:
    if cluster.vm_rollout_strategy != "LiveUpdate" or spec.get("architecture") == "arm64":
        return
    domain = spec["domain"]
    cpu = domain["cpu"]
    if not cpu.get("maxSockets") and not cpu.get("dedicatedCpuPlacement"):
        per_socket = cpu["cores"] * cpu["threads"]
        ceiling = min(cpu["sockets"] * cluster.max_hotplug_ratio, MAX_VCPUS // per_socket)
        cpu["maxSockets"] = max(ceiling, cpu["sockets"])
    memory = domain.get("memory") or {}
    guest = memory.get("guest")
    if cluster.memory_hotplug and guest is not None and "maxGuest" not in memory and "hugepages" not in memory:
        guest_bytes = to_bytes(guest)
        if guest_bytes >= MEMORY_HOTPLUG_MIN_BYTES and guest_bytes % 2**20 == 0:
            memory["maxGuest"] = format_bytes(guest_bytes * cluster.max_hotplug_ratio)


def _apply_volume_defaults(spec: dict[str, Any]) -> None:
    for volume in spec.get("volumes") or []:
        container_disk = volume.get("containerDisk")
        if container_disk is not None and "imagePullPolicy" not in container_disk:
            container_disk["imagePullPolicy"] = compute_image_pull_policy(container_disk.get("image", ""))


def _apply_default_network(spec: dict[str, Any], cluster: ClusterConfig) -> None:
    devices = _child(spec["domain"], "devices")
    if spec.get("networks") or devices.get("interfaces"):
        return
    if devices.get("autoattachPodInterface") is False:
        return
    spec["networks"] = [{"name": "default", "pod": {}}]
    devices["interfaces"] = [{"name": "default", cluster.default_network_interface: {}}]


def _apply_missing_disks(spec: dict[str, Any]) -> None:
    devices = _child(spec["domain"], "devices")
    if devices.get("disks") or devices.get("filesystems"):
        return
    added = [
        {"name": v["name"]}
        for v in spec.get("volumes") or []
        if "memoryDump" not in v and "containerPath" not in v
    ]
    if added:
        devices["disks"] = added


def _apply_disk_defaults(spec: dict[str, Any]) -> None:
    bus = "virtio" if spec.get("architecture") in ("arm64", "s390x") else "sata"
    for disk in spec["domain"]["devices"].get("disks") or []:
        if not any(t in disk for t in DISK_TARGETS):
            disk["disk"] = {}
        cdrom = disk.get("cdrom")
        if cdrom is not None:
            cdrom.setdefault("readonly", True)
            cdrom.setdefault("tray", "closed")
        for target in DISK_TARGETS:
            if target in disk and not disk[target].get("bus"):
                disk[target]["bus"] = bus


def _apply_device_defaults(spec: dict[str, Any]) -> None:
    devices = spec["domain"]["devices"]
    for device in devices.get("inputs") or []:
        device.setdefault("bus", "usb")
        device.setdefault("type", "tablet")
    watchdog = devices.get("watchdog")
    if watchdog:
        for model in ("i6300esb", "diag288"):
            if model in watchdog:
                watchdog[model].setdefault("action", "reset")


def _apply_firmware(spec: dict[str, Any], new_uuid: Callable[[], str]) -> None:
    firmware = _child(spec["domain"], "firmware")
    if not firmware.get("uuid"):
        firmware["uuid"] = new_uuid()
    efi = (firmware.get("bootloader") or {}).get("efi")
    if efi is not None:
        efi.setdefault("secureBoot", True)


def _apply_features(spec: dict[str, Any]) -> None:
    features = _child(spec["domain"], "features")
    if "acpi" not in features and spec.get("architecture") != "s390x":
        features["acpi"] = {}
    for key in FEATURE_STATE_KEYS:
        if key in features:
            features[key].setdefault("enabled", True)
    hyperv = features.get("hyperv")
    if hyperv:
        for key in HYPERV_FEATURE_KEYS:
            if key in hyperv:
                hyperv[key].setdefault("enabled", True)
        if "spinlocks" in hyperv:
            hyperv["spinlocks"].setdefault("spinlocks", DEFAULT_SPINLOCK_RETRIES)


def _apply_probe_defaults(spec: dict[str, Any]) -> None:
    for key in ("livenessProbe", "readinessProbe"):
        probe = spec.get(key)
        if probe is not None:
            for name, value in PROBE_DEFAULTS.items():
                probe.setdefault(name, value)


def compute_vmi_spec_defaults(
    spec: dict[str, Any], cluster: ClusterConfig, *, new_uuid: Callable[[], str] = _new_uuid
) -> dict[str, Any]:
    """A copy of the VMI ``spec`` with KubeVirt's create-time defaults (see module doc).

    ``spec`` must have passed decoding and the quantity checks (malformed quantities raise)."""
    spec = copy_json(spec)
    spec.setdefault("architecture", cluster.architecture)
    domain = _child(spec, "domain")
    _child(domain, "machine").setdefault("type", cluster.machine_type(spec["architecture"]))
    _apply_resources(domain)
    _apply_cpu(domain, cluster)
    _apply_volume_defaults(spec)
    if cluster.eviction_strategy is not None:
        spec.setdefault("evictionStrategy", cluster.eviction_strategy)
    _apply_default_network(spec, cluster)
    _apply_missing_disks(spec)
    _apply_firmware(spec, new_uuid)
    _apply_features(spec)
    _apply_disk_defaults(spec)
    _apply_device_defaults(spec)
    _apply_probe_defaults(spec)
    _apply_hotplug_ceilings(spec, cluster)
    return spec


def compute_vmi_status_on_create(spec: dict[str, Any], status: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The status a new VMI starts with: phase ``Pending`` (with its transition time ``now``,
    RFC 3339), the memory it boots with and its current CPU topology (§6.1 steps 15, 19)."""
    status = copy_json(status or {})
    status["phase"] = "Pending"
    status["phaseTransitionTimestamps"] = [{"phase": "Pending", "phaseTransitionTimestamp": now}]
    guest = (spec["domain"].get("memory") or {}).get("guest")
    if guest is not None:
        status["memory"] = {"guestAtBoot": guest, "guestCurrent": guest, "guestRequested": guest}
    cpu = spec["domain"]["cpu"]
    status["currentCPUTopology"] = {k: cpu[k] for k in ("sockets", "cores", "threads")}
    return status


