"""VMI -> libvirt domain XML: the ordered configurator list and the entry point.

Owns: :data:`CONFIGURATORS` (order matters where one reads another's result: the disk
configurator runs before the controllers; firmware before features so secure boot's SMM
stays on) and :func:`compute_domain_xml`. Each configurator is a small function in
:mod:`.configurators`; the structs are in :mod:`.schema`; :mod:`.xmlmodel` renders them.
"""

from __future__ import annotations

from typing import Callable

from .configurators.console import configure_guest_agent_channel, configure_serial_console
from .configurators.controllers import configure_controllers
from .configurators.cpu import configure_cpu
from .configurators.devices import configure_inputs, configure_memballoon, configure_rng, configure_watchdog
from .configurators.disks import configure_disks
from .configurators.features import configure_clock, configure_features
from .configurators.firmware import configure_firmware, configure_sysinfo
from .configurators.identity import configure_identity
from .configurators.memory import configure_memory
from .configurators.network import configure_network
from .context import ConversionContext
from .schema import Domain
from .xmlmodel import render_xml

Configurator = Callable[[dict, ConversionContext, Domain], None]

CONFIGURATORS: tuple[Configurator, ...] = (
    configure_identity,
    configure_memory,
    configure_cpu,
    configure_sysinfo,
    configure_firmware,
    configure_features,
    configure_clock,
    configure_disks,
    configure_controllers,
    configure_network,
    configure_serial_console,
    configure_guest_agent_channel,
    configure_inputs,
    configure_watchdog,
    configure_memballoon,
    configure_rng,
)


def compute_domain(vmi: dict, ctx: ConversionContext) -> Domain:
    """The typed domain for ``vmi`` (a KubeVirt VMI as a JSON-ready dict).

    Raises :class:`.errors.DomainConversionError` with a stable reason.
    """
    domain = Domain(type=ctx.domain_type, name="")
    if ctx.emulator:
        domain.devices.emulator = ctx.emulator
    for configure in CONFIGURATORS:
        configure(vmi, ctx, domain)
    return domain


def compute_domain_xml(vmi: dict, ctx: ConversionContext) -> str:
    """Libvirt domain XML for ``vmi`` on this node (``ctx``); see :func:`compute_domain`.

    No side effects: files the XML names (overlays, ISOs) are made by
    :func:`.preparation.apply_disk_preparation`.
    """
    return render_xml(compute_domain(vmi, ctx))
