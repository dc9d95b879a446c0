"""Controllers: virtio-scsi when a SCSI disk exists; USB off unless a USB device needs it.

Source: KubeVirt converter controller rules (``virtio-non-transitional`` SCSI controller on
amd64; ``<controller type='usb' model='none'>`` when no USB device is needed).
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..schema import Controller, Domain


def configure_controllers(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """Adds the SCSI controller and the USB controller (``none`` or ``qemu-xhci``)."""
    buses = {d.target.bus for d in domain.devices.disks if d.target}
    inputs = vmi_view.devices(vmi).get("inputs") or []
    needs_usb = "usb" in buses or any((i.get("bus") or "usb") == "usb" for i in inputs)
    domain.devices.controllers.append(Controller(type="usb", index=0, model="qemu-xhci" if needs_usb else "none"))
    if "scsi" in buses:
        transitional = bool(vmi_view.devices(vmi).get("useVirtioTransitional"))
        domain.devices.controllers.append(Controller(
            type="scsi", index=0, model="virtio-transitional" if transitional else "virtio-non-transitional"))
