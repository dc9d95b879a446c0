"""Domain type, name, UUID, KubeVirt metadata and lifecycle actions.

Source: KubeVirt converter ``Convert_v1_VirtualMachineInstance_To_api_Domain``: name
``<namespace>_<name>``, ``<metadata><kubevirt><uid>``; the UUID is ``firmware.uuid``
(kubevirt-py falls back to the VMI uid, then a UUIDv5 of namespace/name).
"""

from __future__ import annotations

import uuid

from .. import vmi_view
from ..context import ConversionContext
from ..schema import Domain, KubevirtMetadata, Metadata


def domain_name(namespace: str, name: str) -> str:
    """The libvirt domain name of a VMI: ``<namespace>_<name>`` (KubeVirt's VMINamespaceKeyFunc form)."""
    return f"{namespace}_{name}"


def compute_domain_uuid(vmi: dict) -> str:
    """``spec.domain.firmware.uuid``, else ``metadata.uid``, else UUIDv5(OID, "<ns>/<name>")."""
    fw = vmi_view.domain_spec(vmi).get("firmware") or {}
    if fw.get("uuid"):
        return str(fw["uuid"])
    if vmi_view.metadata(vmi).get("uid"):
        return str(uuid.UUID(vmi_view.metadata(vmi)["uid"]))
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{vmi_view.namespace_of(vmi)}/{vmi_view.name_of(vmi)}"))


def configure_identity(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """Sets ``type``, ``name``, ``uuid``, ``metadata`` and, for ``rebootPolicy: Terminate``,
    ``on_reboot=destroy`` (KubeVirt's reboot policy configurator)."""
    ns, name = vmi_view.namespace_of(vmi), vmi_view.name_of(vmi)
    domain.type = ctx.domain_type
    domain.name = domain_name(ns, name)
    domain.uuid = compute_domain_uuid(vmi)
    domain.metadata = Metadata(kubevirt=KubevirtMetadata(uid=vmi_view.metadata(vmi).get("uid"),
                                                         namespace=ns, name=name))
    if vmi_view.domain_spec(vmi).get("rebootPolicy") == "Terminate":
        domain.on_reboot = "destroy"
