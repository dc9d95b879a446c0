"""Guest memory in bytes.

Source: KubeVirt ``vcpu.GetMemory``-style precedence: ``domain.memory.guest``, else
``resources.requests.memory``, else ``resources.limits.memory``. ``<memory unit='b'>``.
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..errors import DomainConversionError
from ..quantity import parse_quantity
from ..schema import Domain, Memory


def compute_guest_memory(vmi: dict) -> int:
    """Guest-visible memory in bytes; raises DomainConversionError(InvalidSpec) when none is given."""
    d = vmi_view.domain_spec(vmi)
    resources = d.get("resources") or {}
    for path, value in (
        ("spec.domain.memory.guest", (d.get("memory") or {}).get("guest")),
        ("spec.domain.resources.requests.memory", (resources.get("requests") or {}).get("memory")),
        ("spec.domain.resources.limits.memory", (resources.get("limits") or {}).get("memory")),
    ):
        if value is not None:
            return parse_quantity(value, path)
    raise DomainConversionError("InvalidSpec", "spec.domain.memory.guest: no guest memory given")


def configure_memory(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """``<memory unit='b'>`` = guest memory. (Memory hotplug ``maxGuest`` is not converted.)"""
    domain.memory = Memory(value=compute_guest_memory(vmi), unit="b")
