"""Kubernetes core (``v1``) pieces that appear inside KubeVirt specs: tolerations, probe
handlers, DNS config, local object references (source: k8s.io/api core/v1 types.go).

Large core types that KubeVirt only passes through to the launcher pod (affinity,
topologySpreadConstraints) are kept loose as ``Object`` in the specs that use them.
"""

from __future__ import annotations

from shared.api.base import ApiStruct, Int64, IntOrString


class Toleration(ApiStruct, kw_only=True):
    """Lets the VMI's pod schedule onto nodes with matching taints."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: Int64 | None = None


class LocalObjectReference(ApiStruct, kw_only=True):
    """A reference to an object in the same namespace, by name."""

    name: str | None = None


class ExecAction(ApiStruct, kw_only=True):
    """Run ``command`` (for VMIs: through the guest agent)."""

    command: list[str] | None = None


class HTTPHeader(ApiStruct, kw_only=True):
    """One header of an HTTP probe."""

    name: str
    value: str


class HTTPGetAction(ApiStruct, kw_only=True):
    """HTTP GET probe against the VMI's pod IP."""

    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(ApiStruct, kw_only=True):
    """TCP connect probe."""

    port: IntOrString
    host: str | None = None


class PodDNSConfigOption(ApiStruct, kw_only=True):
    """A resolver option (``ndots`` ...)."""

    name: str | None = None
    value: str | None = None


class PodDNSConfig(ApiStruct, kw_only=True):
    """DNS settings (Pod semantics): up to 3 nameservers, 6 search domains."""

    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None
