"""VMI network and interface rules (kubevirt-api.md §6.3 rules 52-56; KubeVirt
pkg/network/admitter)."""

from __future__ import annotations

import re
from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, duplicate, forbidden, invalid_value, not_found, not_supported
from shared.api.networks import NETWORK_SOURCE_FIELDS
from shared.errors import StatusCause

INTERFACE_MODELS = ("e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio")
BINDINGS = ("bridge", "masquerade", "sriov", "passtBinding", "binding", "slirp", "macvtap", "passt")
DISCONTINUED_BINDINGS = ("slirp", "macvtap", "passt")
PROTOCOLS = ("TCP", "UDP")
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MAC_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
DHCP_PRIVATE_OPTIONS = range(224, 255)
PORT_RANGE = range(1, 65536)


def _interfaces(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return ((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []


def check_network_sources(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Network names unique, one source each; at most one pod network or Multus default, not
    both (rules 52, 53)."""
    causes: list[StatusCause] = []
    seen: set[str] = set()
    pod_or_default = 0
    for i, network in enumerate(spec.get("networks") or []):
        field = at(path, "networks", i)
        name = network.get("name", "")
        if name in seen:
            causes.append(
                duplicate(
                    at(field, "name"), f"Network with name {name} already exists, every network must have a unique name"
                )
            )
        seen.add(name)
        sources = [s for s in NETWORK_SOURCE_FIELDS if s in network]
        if not sources:
            causes.append(invalid_value(field, "should have a network type"))
        elif len(sources) > 1:
            causes.append(invalid_value(field, "should have only one network type"))
        if "pod" in network or (network.get("multus") or {}).get("default"):
            pod_or_default += 1
            if pod_or_default > 1:
                causes.append(
                    invalid_value(
                        field, "more than one interface is connected to a pod network or multus default network"
                    )
                )
    return causes


def check_interfaces_match_networks(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Every interface has a network and every network an interface; one interface per
    network (rule 52)."""
    causes: list[StatusCause] = []
    networks = {n.get("name") for n in spec.get("networks") or []}
    used: dict[Any, int] = {}
    for i, interface in enumerate(_interfaces(spec)):
        field = at(path, "domain", "devices", "interfaces", i, "name")
        name = interface.get("name")
        if name not in networks:
            causes.append(not_found(field, f"{field} '{name}' not found."))
        if name in used:
            causes.append(duplicate(field, "Only one interface can be connected to one specific network"))
        used[name] = i
    for i, network in enumerate(spec.get("networks") or []):
        if network.get("name") not in used:
            field = at(path, "networks", i, "name")
            causes.append(not_found(field, f"{field} '{network.get('name')}' not found."))
    return causes


def check_interface_bindings(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Exactly one binding; discontinued bindings refused; masquerade only on the pod network;
    bridge on the pod network only when permitted (rule 54)."""
    causes: list[StatusCause] = []
    networks = {n.get("name"): n for n in spec.get("networks") or []}
    for i, interface in enumerate(_interfaces(spec)):
        field = at(path, "domain", "devices", "interfaces", i)
        bindings = [b for b in BINDINGS if b in interface]
        if len(bindings) != 1:
            causes.append(
                invalid_value(
                    field,
                    f"logical {interface.get('name')} interface must have exactly one binding method or binding plugin",
                )
            )
            continue
        binding = bindings[0]
        network = networks.get(interface.get("name")) or {}
        if binding in DISCONTINUED_BINDINGS:
            causes.append(forbidden(at(field, binding), f"{binding} network binding is discontinued since v1.3"))
        elif binding == "masquerade" and network and "pod" not in network:
            causes.append(
                invalid_value(at(field, "masquerade"), "Masquerade interface only implemented with pod network")
            )
        elif binding == "bridge" and "pod" in network and not cluster.permit_bridge_interface_on_pod_network:
            causes.append(
                forbidden(
                    at(field, "bridge"), "Bridge on pod network configuration is not enabled under kubevirt-config"
                )
            )
    return causes


def check_interface_options(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Interface name characters, model, MAC and PCI address syntax, ports and DHCP private
    options (rules 55, 56)."""
    causes: list[StatusCause] = []
    for i, interface in enumerate(_interfaces(spec)):
        field = at(path, "domain", "devices", "interfaces", i)
        name = interface.get("name", "")
        if not INTERFACE_NAME.match(name):
            causes.append(
                invalid_value(
                    at(field, "name"),
                    "Network interface name can only contain alphabetical characters, numbers, dashes (-) or "
                    "underscores (_)",
                )
            )
        model = interface.get("model")
        if model is not None and model not in INTERFACE_MODELS:
            causes.append(
                not_supported(at(field, "model"), f"interface {name} uses model {model} that is not supported.")
            )
        mac = interface.get("macAddress")
        if mac is not None and not MAC_ADDRESS.match(mac):
            causes.append(
                invalid_value(at(field, "macAddress"), f"interface {name} has malformed MAC address ({mac}).")
            )
        pci = interface.get("pciAddress")
        if pci is not None and not PCI_ADDRESS.match(pci):
            causes.append(
                invalid_value(at(field, "pciAddress"), f"interface {name} has malformed PCI address ({pci}).")
            )
        causes.extend(_check_ports(interface, field))
        options = (interface.get("dhcpOptions") or {}).get("privateOptions") or []
        seen: set[int] = set()
        for j, option in enumerate(options):
            number = option.get("option")
            if number not in DHCP_PRIVATE_OPTIONS:
                causes.append(
                    invalid_value(
                        at(field, "dhcpOptions", "privateOptions", j, "option"),
                        "provided DHCPPrivateOptions are out of range, must be in range 224 to 254",
                    )
                )
            elif number in seen:
                causes.append(
                    duplicate(
                        at(field, "dhcpOptions", "privateOptions", j, "option"),
                        f"Found Duplicates: you have provided duplicate DHCPPrivateOptions {number}",
                    )
                )
            seen.add(number)
    return causes


def _check_ports(interface: dict[str, Any], field: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    names: set[str] = set()
    for j, port in enumerate(interface.get("ports") or []):
        pfield = at(field, "ports", j)
        name = port.get("name")
        if name:
            if name in names:
                causes.append(duplicate(at(pfield, "name"), f"Duplicate name of the port: {name}"))
            names.add(name)
        protocol = port.get("protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            causes.append(not_supported(at(pfield, "protocol"), "Unknown protocol, only TCP or UDP allowed"))
        if port.get("port") not in PORT_RANGE:
            causes.append(invalid_value(at(pfield, "port"), "Port field must be in range 0 < x < 65536."))
    return causes


NETWORK_RULES = (
    check_network_sources,
    check_interfaces_match_networks,
    check_interface_bindings,
    check_interface_options,
)
