"""The pod NIC as QEMU user-mode networking, with host port forwards standing in for masquerade.

Source: KubeVirt interface rules (``../shared/docs/kubevirt-api.md`` §7 "Interfaces"):
model ``virtio-non-transitional`` (or the chosen model), ``<alias name='ua-<iface>'>``, ``<mac>``
when set, ``<rom enabled='no'>`` without boot order, ``<boot order>``, ``<link state='down'>``;
``absent`` interfaces are skipped.

kubevirt-py has no pod network: the pod interface (``masquerade`` or ``bridge`` binding on
``pod: {}``) becomes ``<interface type='user'>`` (slirp; guest 10.0.2.15, gateway 10.0.2.2).
libvirt 9.0 cannot put ``hostfwd`` on a user interface (``<portForward>`` exists only for the
passt backend, which Debian 12 does not install), so when the handler reserved host ports
the NIC is given to QEMU directly through ``<qemu:commandline>`` as
``-netdev user,hostfwd=...`` + ``-device``; the guest sees the same NIC either way.
Other networks (multus, SR-IOV, binding plugins) raise ``UnsupportedNetwork``.
"""

from __future__ import annotations

import hashlib

from .. import vmi_view
from ..context import ConversionContext
from ..errors import DomainConversionError
from ..schema import (Alias, Boot, Domain, Interface, InterfaceModel, LinkState, MacAddress, QemuArg,
                      QemuCommandline, Rom)

QEMU_DEVICE_MODEL = {
    "virtio-non-transitional": "virtio-net-pci-non-transitional",
    "virtio-transitional": "virtio-net-pci-transitional",
    "e1000": "e1000", "e1000e": "e1000e", "igb": "igb", "rtl8139": "rtl8139", "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
}


FORWARDING_NIC_SLOT = "0x1b"


def compute_mac(vmi: dict, iface: dict) -> str:
    """``macAddress`` or a stable locally administered 52:54:00 address from the VMI uid/name."""
    if iface.get("macAddress"):
        return iface["macAddress"].lower()
    seed = (vmi_view.metadata(vmi).get("uid") or f"{vmi_view.namespace_of(vmi)}/{vmi_view.name_of(vmi)}")
    digest = hashlib.sha256(f"{seed}/{iface['name']}".encode()).digest()
    return "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])


def configure_network(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """At most one pod NIC (see module doc)."""
    transitional = bool(vmi_view.devices(vmi).get("useVirtioTransitional"))
    present = [(i, iface, net) for i, iface, net in vmi_view.pod_interfaces(vmi) if iface.get("state") != "absent"]
    if len(present) > 1:
        raise DomainConversionError("UnsupportedNetwork",
                                    "spec.domain.devices.interfaces: kubevirt-py supports one interface")
    for i, iface, net in present:
        fp = f"spec.domain.devices.interfaces[{i}]"
        if "pod" not in net:
            raise DomainConversionError("UnsupportedNetwork",
                                        f"{fp}: network {iface['name']!r} is not the pod network")
        binding = next((k for k in ("masquerade", "bridge", "sriov", "passtBinding", "binding") if k in iface),
                       "masquerade")
        if binding not in ("masquerade", "bridge"):
            raise DomainConversionError("UnsupportedNetwork", f"{fp}.{binding}: binding not supported here")
        model = iface.get("model") or "virtio"
        if model == "virtio":
            model = "virtio-transitional" if transitional else "virtio-non-transitional"
        alias = f"ua-{iface['name']}"
        if ctx.port_forwards and ctx.domain_type != "test":
            _configure_forwarding_nic(vmi, ctx, domain, iface, model, alias)
            continue
        nic = Interface(type="user", mac=MacAddress(compute_mac(vmi, iface)), model=InterfaceModel(type=model),
                        alias=Alias(name=alias))
        if iface.get("bootOrder"):
            nic.boot = Boot(order=int(iface["bootOrder"]))
        else:
            nic.rom = Rom(enabled="no")
        if iface.get("state") == "down":
            nic.link = LinkState(state="down")
        domain.devices.interfaces.append(nic)


def _configure_forwarding_nic(vmi: dict, ctx: ConversionContext, domain: Domain, iface: dict, model: str,
                              alias: str) -> None:
    forwards = ",".join(
        f"hostfwd={pf.protocol.lower()}:{pf.host_address}:{pf.host_port}-:{pf.guest_port}"
        for pf in ctx.port_forwards)
    # an integrated endpoint in a slot libvirt's own allocation (root ports from 0x1, SATA at 0x1f)
    # does not reach; without an address QEMU would take slot 1 before libvirt's root ports
    device = [QEMU_DEVICE_MODEL.get(model, model), f"netdev={alias}", f"mac={compute_mac(vmi, iface)}",
              f"bus=pcie.0,addr={FORWARDING_NIC_SLOT}"]
    if not iface.get("bootOrder"):
        device.append("romfile=")
    else:
        device.append(f"bootindex={int(iface['bootOrder'])}")
    args = ["-netdev", f"user,id={alias},{forwards}", "-device", ",".join(device)]
    if domain.qemu_commandline is None:
        domain.qemu_commandline = QemuCommandline()
    domain.qemu_commandline.args.extend(QemuArg(value=a) for a in args)
