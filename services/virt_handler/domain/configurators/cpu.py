"""vCPU count, topology and CPU model.

Source: KubeVirt converter CPU rules (``../shared/docs/kubevirt-api.md`` §7): vCPUs =
sockets x cores x threads (each defaults to 1; with no topology, sockets come from the
CPU limit, else request, rounded up); model ``host-model`` (default) / ``host-passthrough``
-> ``<cpu mode>``, any other name -> ``mode='custom'`` + ``<model>``; features -> ``<feature>``;
amd64 adds ``mpx`` disabled to host-model.

Without KVM (TCG, ``useEmulation``) host CPU modes describe a CPU QEMU cannot emulate, so
kubevirt-py leaves the model to QEMU's default for ``host-model`` and uses ``maximum`` (all
TCG features) for ``host-passthrough``.
"""

from __future__ import annotations

import math

from .. import vmi_view
from ..context import ConversionContext
from ..quantity import parse_quantity
from ..schema import CPU, CPUFeature, CPUModel, CPUTopology, Domain, Vcpu


def compute_topology(vmi: dict) -> tuple[int, int, int]:
    """``(sockets, cores, threads)`` of the guest."""
    d = vmi_view.domain_spec(vmi)
    cpu = d.get("cpu") or {}
    if any(cpu.get(k) for k in ("sockets", "cores", "threads")):
        return int(cpu.get("sockets") or 1), int(cpu.get("cores") or 1), int(cpu.get("threads") or 1)
    resources = d.get("resources") or {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get("cpu")
        if value is not None:
            return max(1, math.ceil(compute_cores(value, f"spec.domain.resources.{section}.cpu"))), 1, 1
    return 1, 1, 1


def compute_cores(value: str | int | float, field_path: str) -> float:
    """CPU quantity in cores: ``"500m"`` -> 0.5, ``"2"`` / ``2`` -> 2."""
    text = str(value)
    if text.endswith("m"):
        return parse_quantity(text[:-1], field_path) / 1000
    return float(parse_quantity(text, field_path))


def configure_cpu(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """``<vcpu placement='static'>`` and ``<cpu>`` with topology, mode/model and features."""
    sockets, cores, threads = compute_topology(vmi)
    domain.vcpu = Vcpu(value=sockets * cores * threads)
    cpu_spec = vmi_view.domain_spec(vmi).get("cpu") or {}
    model = cpu_spec.get("model") or "host-model"
    cpu = CPU(topology=CPUTopology(sockets=sockets, dies=None, cores=cores, threads=threads))
    if model in ("host-model", "host-passthrough"):
        if ctx.is_kvm:
            cpu.mode = model
            if model == "host-model":
                cpu.features.append(CPUFeature(name="mpx", policy="disable"))
        elif model == "host-passthrough":
            cpu.mode = "maximum"
    else:
        cpu.mode, cpu.check = "custom", "none"
        cpu.model = CPUModel(name=model, fallback="allow")
    if cpu.mode is not None:
        for feature in cpu_spec.get("features") or []:
            cpu.features.append(CPUFeature(name=feature["name"], policy=feature.get("policy") or "require"))
    domain.cpu = cpu
