"""VMI start, eviction, probe, hostname and DNS rules (kubevirt-api.md §6.3 rules 41-45;
KubeVirt vmi-create-admitter.go)."""

from __future__ import annotations

import ipaddress
from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, invalid_value, not_supported, required
from shared.admission.naming import is_dns1123_label, is_dns1123_subdomain
from shared.errors import StatusCause

START_STRATEGIES = ("Paused",)
EVICTION_STRATEGIES = ("None", "LiveMigrate", "LiveMigrateIfPossible", "External")
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "guestAgentPing")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
MAX_NAMESERVERS = 3
MAX_SEARCHES = 6
MAX_SEARCH_CHARS = 256


def check_start_strategy(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``startStrategy`` is ``Paused`` and then comes without a liveness probe (rule 41)."""
    strategy = spec.get("startStrategy")
    if strategy is None:
        return []
    field = at(path, "startStrategy")
    if strategy not in START_STRATEGIES:
        return [not_supported(field, f"{field} is set with an unrecognized option: {strategy}")]
    if spec.get("livenessProbe") is not None:
        return [
            invalid_value(
                field,
                f"either {field} or {at(path, 'livenessProbe')} should be provided.Pausing VMI with LivenessProbe is "
                "not supported",
            )
        ]
    return []


def check_eviction_strategy(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``evictionStrategy`` is None, LiveMigrate, LiveMigrateIfPossible or External (rule 42)."""
    strategy = spec.get("evictionStrategy")
    if strategy is not None and strategy not in EVICTION_STRATEGIES:
        field = at(path, "evictionStrategy")
        return [not_supported(field, f"{field} is set with an unrecognized option: {strategy}")]
    return []


def _uses_pod_network(spec: dict[str, Any]) -> bool:
    return any("pod" in n for n in spec.get("networks") or [])


def check_probes(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Each probe has exactly one handler; httpGet/tcpSocket need the pod network (rule 43)."""
    causes: list[StatusCause] = []
    for key in ("livenessProbe", "readinessProbe"):
        probe = spec.get(key)
        if probe is None:
            continue
        field = at(path, key)
        handlers = [h for h in PROBE_HANDLERS if h in probe]
        if not handlers:
            causes.append(
                required(
                    field,
                    f"either {field}.tcpSocket, {field}.exec, {field}.guestAgentPing or {field}.httpGet must be set if "
                    f"a {field} is specified",
                )
            )
        elif len(handlers) > 1:
            causes.append(invalid_value(field, f"{field} must have exactly one probe type set"))
        elif handlers[0] in ("httpGet", "tcpSocket") and not _uses_pod_network(spec):
            causes.append(
                invalid_value(
                    at(field, handlers[0]), f"{at(field, handlers[0])} is only allowed if the Pod Network is attached"
                )
            )
        for timing in (
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ):
            if probe.get(timing) is not None and probe[timing] < 0:
                causes.append(
                    invalid_value(at(field, timing), f"{at(field, timing)} must be greater than or equal to 0")
                )
    return causes


def check_hostname(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``hostname`` is a DNS-1123 label and ``subdomain`` a DNS-1123 subdomain (rule 44)."""
    causes: list[StatusCause] = []
    hostname = spec.get("hostname")
    if hostname is not None and not is_dns1123_label(hostname):
        causes.append(
            invalid_value(at(path, "hostname"), f"does not conform to the kubernetes DNS_LABEL rules : {hostname}")
        )
    subdomain = spec.get("subdomain")
    if subdomain is not None and not is_dns1123_subdomain(subdomain):
        causes.append(
            invalid_value(
                at(path, "subdomain"), f"does not conform to the kubernetes DNS_SUBDOMAIN rules : {subdomain}"
            )
        )
    return causes


def check_dns(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """DNS policy known; ``None`` needs nameservers; at most 3 valid nameserver IPs, 6 search
    domains of 256 characters in total (rule 45, Kubernetes pod DNS rules)."""
    causes: list[StatusCause] = []
    policy = spec.get("dnsPolicy")
    config = spec.get("dnsConfig") or {}
    if policy is not None and policy not in DNS_POLICIES:
        causes.append(
            not_supported(
                at(path, "dnsPolicy"),
                f"{at(path, 'dnsPolicy')} is not supported: {policy}, must be one of: [{' '.join(DNS_POLICIES)}]",
            )
        )
    nameservers = config.get("nameservers") or []
    if policy == "None" and not nameservers:
        causes.append(
            required(
                at(path, "dnsConfig", "nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )
        )
    if len(nameservers) > MAX_NAMESERVERS:
        causes.append(
            invalid_value(
                at(path, "dnsConfig", "nameservers"),
                f"must not have more than {MAX_NAMESERVERS} nameservers: {nameservers}",
            )
        )
    for i, server in enumerate(nameservers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            causes.append(
                invalid_value(at(path, "dnsConfig", "nameservers", i), f"must be a valid IP address: {server}")
            )
    searches = config.get("searches") or []
    if len(searches) > MAX_SEARCHES:
        causes.append(
            invalid_value(at(path, "dnsConfig", "searches"), f"must not have more than {MAX_SEARCHES} search paths")
        )
    if len(" ".join(searches)) > MAX_SEARCH_CHARS:
        causes.append(
            invalid_value(
                at(path, "dnsConfig", "searches"),
                f"must not have more than {MAX_SEARCH_CHARS} characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        if not is_dns1123_subdomain(search.rstrip(".")):
            causes.append(invalid_value(at(path, "dnsConfig", "searches", i), f"{search!r} must be a DNS subdomain"))
    return causes


LIFECYCLE_RULES = (check_start_strategy, check_eviction_strategy, check_probes, check_hostname, check_dns)
