"""What a VMI asks of a node: CPU in millicores and memory in bytes.

Owns the translation from a VMI spec (KubeVirt field names) to the requests
the virt-launcher pod would carry, and the formatting of Node capacities
(parsing of quantities is ``shared.api.quantity``). Placement decisions are in
``placement.py``; this module only computes numbers.

Rules (KubeVirt ``pkg/virt-controller/services/renderresources.go``):
- CPU: ``resources.requests.cpu`` when set; else with ``dedicatedCpuPlacement``
  one whole CPU per vCPU; else vCPUs / ``cpuAllocationRatio`` (default 10, so
  100m per vCPU), vCPUs = sockets x cores x threads (each default 1).
- Memory: ``resources.requests.memory``, else ``resources.limits.memory``, else
  ``memory.guest``. KubeVirt adds the launcher's virtualization overhead on top;
  the embedded installation has no launcher pod, so no overhead is charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.api.domain import DomainSpec
from shared.api.quantity import parse_quantity, to_bytes, to_millicores
from shared.api.vmi import VirtualMachineInstance

CPU_ALLOCATION_RATIO = 10  # KubeVirt default developerConfiguration.cpuAllocationRatio


def format_millicores(millicores: int) -> str:
    """Millicores in Kubernetes notation: whole CPUs as ``"2"``, else ``"1500m"``."""
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_bytes(count: int) -> str:
    """Bytes in the notation kubelet uses for Node capacity: ``"<n>Ki"`` when divisible by 1024."""
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count % factor == 0 and count >= factor:
            return f"{count // factor}{suffix}"
    return str(count)


@dataclass(frozen=True)
class Requests:
    """Resources one VMI needs on a node: ``cpu_millicores`` (1000 = one CPU) and ``memory_bytes``."""

    cpu_millicores: int
    memory_bytes: int

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_millicores + other.cpu_millicores, self.memory_bytes + other.memory_bytes)

    def __sub__(self, other: Requests) -> Requests:
        return Requests(self.cpu_millicores - other.cpu_millicores, self.memory_bytes - other.memory_bytes)


NO_REQUESTS = Requests(0, 0)


def _domain_vcpus(domain: DomainSpec) -> int:
    cpu = domain.cpu
    if cpu is not None and (cpu.sockets or cpu.cores or cpu.threads):
        return (cpu.sockets or 1) * (cpu.cores or 1) * (cpu.threads or 1)
    resources = domain.resources
    if resources is not None:
        for section in (resources.limits, resources.requests):
            amount = (section or {}).get("cpu")
            if amount is not None:
                return max(1, math.ceil(parse_quantity(amount)))
    return 1


def compute_vcpus(vmi: VirtualMachineInstance) -> int:
    """Number of vCPUs: sockets x cores x threads from ``spec.domain.cpu`` (each defaults to 1).

    Without a topology, KubeVirt derives the vCPU count from the CPU request/limit (rounded up).
    Raises ``BadRequest`` when that quantity cannot be parsed.
    """
    return _domain_vcpus(vmi.spec.domain)


def compute_vmi_requests(vmi: VirtualMachineInstance) -> Requests:
    """The CPU and memory a VMI requests from its node (see module docstring for the rules).

    Raises ``BadRequest`` when a quantity in the spec cannot be parsed.
    """
    domain = vmi.spec.domain
    resources = domain.resources
    requests = (resources.requests if resources else None) or {}
    limits = (resources.limits if resources else None) or {}
    request_cpu = requests.get("cpu")
    limit_cpu = limits.get("cpu")
    if request_cpu is not None:
        cpu = to_millicores(request_cpu)
    elif domain.cpu is not None and domain.cpu.dedicated_cpu_placement:
        cpu = _domain_vcpus(domain) * 1000
    elif limit_cpu is not None:
        cpu = to_millicores(limit_cpu)
    else:
        cpu = math.ceil(_domain_vcpus(domain) * 1000 / CPU_ALLOCATION_RATIO)
    memory_value = (requests.get("memory") or limits.get("memory")
                    or (domain.memory.guest if domain.memory else None))
    memory = to_bytes(memory_value) if memory_value is not None else 0
    return Requests(cpu_millicores=cpu, memory_bytes=memory)
