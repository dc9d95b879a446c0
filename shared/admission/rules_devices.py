"""VMI device rules: input devices, IO threads policy, sound and panic devices, watchdog
(kubevirt-api.md §6.3 rules 46, 47, 49; KubeVirt vmi-create-admitter.go)."""

from __future__ import annotations

from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, invalid_value, not_supported
from shared.errors import StatusCause

INPUT_BUSES = ("virtio", "usb")
INPUT_TYPES = ("tablet",)
IO_THREADS_POLICIES = ("shared", "auto", "supplementalPool")
SOUND_MODELS = ("ich9", "ac97")
PANIC_MODELS = ("hyperv", "isa", "pvpanic")
WATCHDOG_ACTIONS = ("poweroff", "reset", "shutdown")


def check_inputs(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Input devices are tablets on usb or virtio (rule 46)."""
    causes: list[StatusCause] = []
    devices = (spec.get("domain") or {}).get("devices") or {}
    for i, device in enumerate(devices.get("inputs") or []):
        field = at(path, "domain", "devices", "inputs", i)
        if device.get("bus") not in (None, "", *INPUT_BUSES):
            causes.append(not_supported(at(field, "bus"), "Input device can have only virtio or usb bus."))
        if device.get("type") not in (None, "", *INPUT_TYPES):
            causes.append(not_supported(at(field, "type"), "Input device can have only tablet type."))
    return causes


def check_io_threads(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``ioThreadsPolicy`` known; ``supplementalPool`` needs a positive thread count (rule 47)."""
    domain = spec.get("domain") or {}
    policy = domain.get("ioThreadsPolicy")
    if policy is None:
        return []
    field = at(path, "domain", "ioThreadsPolicy")
    if policy not in IO_THREADS_POLICIES:
        return [not_supported(field, f"Invalid IOThreadsPolicy ({policy})")]
    count = (domain.get("ioThreads") or {}).get("supplementalPoolThreadCount")
    if policy == "supplementalPool" and (count is None or count < 1):
        return [invalid_value(at(path, "domain", "ioThreads", "supplementalPoolThreadCount"),
                              "the number of iothreads needs to be set and positive for the dedicated policy")]
    return []


def check_sound_panic_watchdog(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Sound model ich9/ac97, panic models hyperv/isa/pvpanic (none on s390x), watchdog with
    one model and a known action (rule 49)."""
    causes: list[StatusCause] = []
    devices = (spec.get("domain") or {}).get("devices") or {}
    sound = devices.get("sound")
    if sound is not None and sound.get("model") not in (None, "", *SOUND_MODELS):
        causes.append(not_supported(at(path, "domain", "devices", "sound", "model"),
                                    "Sound device type is not supported. Options: 'ich9' or 'ac97'"))
    for i, panic in enumerate(devices.get("panicDevices") or []):
        field = at(path, "domain", "devices", "panicDevices", i, "model")
        if spec.get("architecture") == "s390x":
            causes.append(not_supported(field, "custom panic devices are not supported on s390x"))
        elif panic.get("model") not in (None, *PANIC_MODELS):
            causes.append(not_supported(field, f"invalid PanicDeviceModel({panic.get('model')})"))
    watchdog = devices.get("watchdog")
    if watchdog is not None:
        field = at(path, "domain", "devices", "watchdog")
        models = [m for m in ("i6300esb", "diag288") if m in watchdog]
        if len(models) != 1:
            causes.append(invalid_value(field, f"{field} must have exactly one watchdog type set"))
        for model in models:
            action = watchdog[model].get("action")
            if action not in (None, "", *WATCHDOG_ACTIONS):
                causes.append(
                    not_supported(
                        at(field, model, "action"), f"{at(field, model, 'action')} has invalid value {action}"
                    )
                )
    return causes


DEVICE_RULES = (check_inputs, check_io_threads, check_sound_panic_watchdog)
