"""What a VMI asks of a node: CPU in millicores and memory in bytes.

Owns the translation from a VMI spec (KubeVirt field names) to the requests
the virt-launcher pod would carry, and the Kubernetes quantity notation
(``1Gi``, ``500m``) used on both VMIs and Nodes. Placement decisions are in
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
import re
from dataclasses import dataclass
from fractions import Fraction

from shared.errors import BadRequest

CPU_ALLOCATION_RATIO = 10  # KubeVirt default developerConfiguration.cpuAllocationRatio

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(value: str | int | float) -> Fraction:
    """Parse a Kubernetes quantity (``"1Gi"``, ``"500m"``, ``"1.5"``, ``"1e3"``, ``2``) exactly.

    Source: k8s.io/apimachinery ``pkg/api/resource/quantity.go`` (binary SI, decimal SI and
    decimal-exponent suffixes). Raises ``shared.errors.BadRequest`` for anything else.
    """
    if isinstance(value, bool):
        raise BadRequest(f"quantity {value!r} is not a number")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise BadRequest(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    number, exponent, suffix = match.groups()
    amount = Fraction(number)
    if exponent:
        return amount * Fraction(10) ** int(exponent[1:])
    if suffix in _BINARY:
        return amount * _BINARY[suffix]
    return amount * _DECIMAL[suffix or ""]


def to_millicores(value: str | int | float) -> int:
    """A CPU quantity in millicores, rounded up as Kubernetes does (``"1"`` -> 1000, ``"0.1"`` -> 100)."""
    return math.ceil(parse_quantity(value) * 1000)


def to_bytes(value: str | int | float) -> int:
    """A memory quantity in bytes, rounded up (``"1Gi"`` -> 1073741824, ``"128M"`` -> 128000000)."""
    return math.ceil(parse_quantity(value))


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

    def __add__(self, other: "Requests") -> "Requests":
        return Requests(self.cpu_millicores + other.cpu_millicores, self.memory_bytes + other.memory_bytes)


def compute_vcpus(vmi: dict) -> int:
    """Number of vCPUs: sockets x cores x threads from ``spec.domain.cpu`` (each defaults to 1).

    Without a topology, KubeVirt derives the vCPU count from the CPU request/limit (rounded up).
    """
    domain = (vmi.get("spec") or {}).get("domain") or {}
    cpu = domain.get("cpu") or {}
    if any(cpu.get(k) for k in ("sockets", "cores", "threads")):
        return int(cpu.get("sockets") or 1) * int(cpu.get("cores") or 1) * int(cpu.get("threads") or 1)
    resources = domain.get("resources") or {}
    for section in ("limits", "requests"):
        amount = (resources.get(section) or {}).get("cpu")
        if amount is not None:
            return max(1, math.ceil(parse_quantity(amount)))
    return 1


def compute_vmi_requests(vmi: dict) -> Requests:
    """The CPU and memory a VMI requests from its node (see module docstring for the rules).

    Raises ``BadRequest`` when a quantity in the spec cannot be parsed.
    """
    domain = (vmi.get("spec") or {}).get("domain") or {}
    resources = domain.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    cpu_spec = domain.get("cpu") or {}
    if requests.get("cpu") is not None:
        cpu = to_millicores(requests["cpu"])
    elif cpu_spec.get("dedicatedCpuPlacement"):
        cpu = compute_vcpus(vmi) * 1000
    elif limits.get("cpu") is not None:
        cpu = to_millicores(limits["cpu"])
    else:
        cpu = math.ceil(compute_vcpus(vmi) * 1000 / CPU_ALLOCATION_RATIO)
    memory_value = (requests.get("memory") or limits.get("memory")
                    or (domain.get("memory") or {}).get("guest"))
    memory = to_bytes(memory_value) if memory_value is not None else 0
    return Requests(cpu_millicores=cpu, memory_bytes=memory)
