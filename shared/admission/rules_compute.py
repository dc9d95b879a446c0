"""VMI memory, CPU, machine and architecture rules (kubevirt-api.md §6.3 rules 27-37; KubeVirt
vmi-create-admitter.go). Quantities are already known to parse (rules_quantities runs first)."""

from __future__ import annotations

import fnmatch
from typing import Any

from shared.admission.cluster import EMULATED_MACHINES, ClusterConfig
from shared.admission.fields import at, forbidden, invalid_value, not_supported, required
from shared.api.quantity import parse_quantity
from shared.errors import StatusCause

MIN_MEMORY_BYTES = 10**6
CPU_FEATURE_POLICIES = ("", "force", "require", "optional", "disable", "forbid")
ARCHITECTURES = ("amd64", "arm64", "s390x")
MAX_DEDICATED_THREADS = 2


def _resources(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    resources = (spec.get("domain") or {}).get("resources") or {}
    return resources.get("requests") or {}, resources.get("limits") or {}


def check_memory(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Some memory is requested; requests/limits are >= 0 and requests >= 1M; requests <=
    limits; hugepages fit the guest memory (rules 27-29, 31)."""
    domain = spec.get("domain") or {}
    memory = domain.get("memory") or {}
    requests, limits = _resources(spec)
    req_field = at(path, "domain", "resources", "requests", "memory")
    lim_field = at(path, "domain", "resources", "limits", "memory")
    hugepages = (memory.get("hugepages") or {}).get("pageSize")
    if (
        requests.get("memory") is None
        and memory.get("guest") is None
        and hugepages is None
        and limits.get("memory") is None
    ):
        return [required(req_field, (
            "no memory requested, at least one of 'spec.domain.memory.guest', "
            "'spec.domain.memory.hugepages.pageSize' or 'spec.domain.resources.requests.memory' must be set"
        ))]
    causes: list[StatusCause] = []
    for field, value in ((req_field, requests.get("memory")), (lim_field, limits.get("memory"))):
        if value is not None and parse_quantity(value) < 0:
            causes.append(invalid_value(field, f"{field} '{value}' must be greater than or equal to 0."))
    if requests.get("memory") is not None and 0 <= parse_quantity(requests["memory"]) < MIN_MEMORY_BYTES:
        causes.append(
            invalid_value(req_field, f"{req_field} '{requests['memory']}' must be greater than or equal to 1M.")
        )
    if (
        requests.get("memory") is not None
        and limits.get("memory") is not None
        and parse_quantity(requests["memory"]) > parse_quantity(limits["memory"])
    ):
        causes.append(invalid_value(
            req_field,
            f"'{req_field}' '{requests['memory']}' is greater than '{lim_field}' '{limits['memory']}'",
        ))
    guest = memory.get("guest")
    if guest is not None and parse_quantity(guest) < 0:
        guest_field = at(path, "domain", "memory", "guest")
        causes.append(invalid_value(guest_field, f"{guest_field} '{guest}' must be greater than or equal to 0."))
    if hugepages is not None:
        causes.extend(_check_hugepages(hugepages, guest or requests.get("memory"), path))
    return causes


def _check_hugepages(page_size: str, guest: str | None, path: str) -> list[StatusCause]:
    field = at(path, "domain", "memory", "hugepages", "pageSize")
    page = parse_quantity(page_size)
    if page <= 0:
        return [invalid_value(field, f"{field} '{page_size}' must be a positive quantity")]
    if guest is None:
        return []
    memory = parse_quantity(guest)
    if memory < page:
        return [invalid_value(field, f"{field} '{page_size}' must be equal to or less than memory '{guest}'")]
    if memory % page != 0:
        return [invalid_value(field, f"memory '{guest}' must be a multiple of the hugepages page size '{page_size}'")]
    return []


def check_cpu(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """CPU requests/limits >= 0 and requests <= limits; feature policies known; dedicated CPU
    and realtime constraints; arm64 single-threaded; sockets <= maxSockets (rules 32-35)."""
    causes: list[StatusCause] = []
    requests, limits = _resources(spec)
    req_field = at(path, "domain", "resources", "requests", "cpu")
    lim_field = at(path, "domain", "resources", "limits", "cpu")
    for field, value in ((req_field, requests.get("cpu")), (lim_field, limits.get("cpu"))):
        if value is not None and parse_quantity(value) < 0:
            causes.append(invalid_value(field, f"{field} '{value}' must be greater than or equal to 0."))
    if requests.get("cpu") is not None and limits.get("cpu") is not None:
        if parse_quantity(requests["cpu"]) > parse_quantity(limits["cpu"]):
            causes.append(invalid_value(
                req_field, f"'{req_field}' '{requests['cpu']}' is greater than '{lim_field}' '{limits['cpu']}'"
            ))
    cpu = (spec.get("domain") or {}).get("cpu") or {}
    for i, feature in enumerate(cpu.get("features") or []):
        policy = feature.get("policy") or ""
        if policy not in CPU_FEATURE_POLICIES:
            causes.append(not_supported(
                at(path, "domain", "cpu", "features", i, "policy"),
                f"CPU feature {feature.get('name')} uses policy {policy} that is not supported.",
            ))
    cpu_path = at(path, "domain", "cpu")
    if cpu.get("isolateEmulatorThread") and not cpu.get("dedicatedCpuPlacement"):
        causes.append(
            invalid_value(
                at(cpu_path, "isolateEmulatorThread"),
                "IsolateEmulatorThread should be only set in combination with DedicatedCPUPlacement",
            )
        )
    if cpu.get("dedicatedCpuPlacement"):
        if (cpu.get("threads") or 0) > MAX_DEDICATED_THREADS:
            causes.append(
                invalid_value(
                    at(cpu_path, "threads"),
                    "Not more than two threads must be provided at the CPU topology when using dedicated CPU placement",
                )
            )
        if (
            requests.get("cpu") is not None
            and limits.get("cpu") is not None
            and parse_quantity(requests["cpu"]) != parse_quantity(limits["cpu"])
        ):
            causes.append(
                invalid_value(req_field, f"{req_field} must be equal to {lim_field} when dedicatedCpuPlacement is true")
            )
        for field, value in ((req_field, requests.get("cpu")), (lim_field, limits.get("cpu"))):
            if value is not None and parse_quantity(value) % 1 != 0:
                causes.append(
                    invalid_value(
                        field,
                        "provided resources CPU requests must be an integer when dedicatedCpuPlacement is true: "
                        f"{value}",
                    )
                )
    if cpu.get("realtime") is not None and not (
        cpu.get("dedicatedCpuPlacement") and (cpu.get("numa") or {}).get("guestMappingPassthrough") is not None
    ):
        causes.append(
            invalid_value(
                at(cpu_path, "realtime"),
                "realtime requires dedicatedCpuPlacement and guestMappingPassthrough to be set",
            )
        )
    if spec.get("architecture") == "arm64" and (cpu.get("threads") or 1) > 1:
        causes.append(forbidden(at(cpu_path, "threads"), "Arm64 not support CPU threads more than 1"))
    if cpu.get("maxSockets") and cpu.get("sockets") and cpu["sockets"] > cpu["maxSockets"]:
        causes.append(
            invalid_value(
                at(cpu_path, "sockets"), "Number of sockets in CPU topology is greater than the maximum sockets allowed"
            )
        )
    for key in ("cores", "sockets", "threads", "maxSockets"):
        if cpu.get(key) is not None and cpu[key] < 0:
            causes.append(invalid_value(at(cpu_path, key), f"{at(cpu_path, key)} must be greater than or equal to 0"))
    return causes


def check_machine_and_architecture(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``architecture`` is amd64, arm64 or s390x; ``machine.type`` matches the architecture's
    emulated machines (rules 36, 37)."""
    arch = spec.get("architecture") or cluster.architecture
    if arch not in ARCHITECTURES:
        return [not_supported(at(path, "architecture"), f"unsupported architecture: {arch}")]
    machine = ((spec.get("domain") or {}).get("machine") or {}).get("type")
    allowed = EMULATED_MACHINES[arch]
    if machine and not any(fnmatch.fnmatchcase(machine, pattern) for pattern in allowed):
        field = at(path, "domain", "machine", "type")
        return [not_supported(field, f"{field} is not supported: {machine} (allowed values: [{' '.join(allowed)}])")]
    return []


COMPUTE_RULES = (check_memory, check_cpu, check_machine_and_architecture)
