"""VMI ``spec.networks``: a name plus one source - the pod network, a Multus network or a
DRA resource claim (source: kubevirt.io/api core/v1 schema.go)."""

from __future__ import annotations

import msgspec

from shared.api.base import ApiStruct


class PodNetwork(ApiStruct, kw_only=True):
    """The pod's own network; with masquerade the guest gets ``.2`` of ``vmNetworkCIDR``."""

    vm_network_cidr: str | None = msgspec.field(default=None, name="vmNetworkCIDR")
    vm_ipv6_network_cidr: str | None = msgspec.field(default=None, name="vmIPv6NetworkCIDR")


class MultusNetwork(ApiStruct, kw_only=True):
    """A NetworkAttachmentDefinition (``namespace/name``)."""

    network_name: str
    default: bool | None = None


class ResourceClaimNetworkSource(ApiStruct, kw_only=True):
    """A network device from a DRA resource claim."""

    claim_name: str | None = None
    request_name: str | None = None


NETWORK_SOURCE_FIELDS: tuple[str, ...] = ("pod", "multus", "resourceClaim")


class Network(ApiStruct, kw_only=True):
    """A network an interface of the same name attaches to."""

    name: str
    pod: PodNetwork | None = None
    multus: MultusNetwork | None = None
    resource_claim: ResourceClaimNetworkSource | None = None
