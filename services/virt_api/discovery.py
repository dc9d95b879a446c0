"""Kubernetes discovery documents built from the resource registry.

Owns: ``/version``, ``/api`` (APIVersions), ``/api/v1`` and ``/apis/<group>/<version>``
(APIResourceList), ``/apis`` (APIGroupList) and ``/apis/<group>`` (APIGroup) — the legacy
(non-aggregated) discovery format that kubectl and client-go fall back to. Pure functions of the
:class:`ResourceInfo` registry plus the extra subresource paths registered by other services
(``subresources.kubevirt.io``). Source of the shapes: k8s.io/apimachinery ``meta/v1/types.go``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.api.resources import ResourceInfo
from shared.errors import NotFound

RESOURCE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]

#: What ``/version`` reports. kubectl compares the minor version with its own for skew warnings.
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+kubevirt-py.0.1.0",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "",
    "goVersion": "",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ExtraResource:
    """A discovery entry that is not a stored resource, e.g. ``virtualmachines/start`` in
    ``subresources.kubevirt.io/v1``; ``verbs`` as in APIResource (``["update"]`` for a PUT)."""

    group: str
    version: str
    name: str
    namespaced: bool
    verbs: tuple[str, ...]
    kind: str = ""
    short_names: tuple[str, ...] = ()


def compute_api_versions(server_address: str) -> dict[str, Any]:
    """The ``/api`` document (core group versions)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def compute_group_versions(resources: Iterable[ResourceInfo], extras: Iterable[ExtraResource]) -> dict[str, list[str]]:
    """Named groups (not core) and their versions, in registry order (the first is preferred)."""
    groups: dict[str, list[str]] = {}
    for group, version in [(r.group, r.version) for r in resources] + [(e.group, e.version) for e in extras]:
        if not group:
            continue
        versions = groups.setdefault(group, [])
        if version not in versions:
            versions.append(version)
    return groups


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def compute_api_group_list(resources: Iterable[ResourceInfo], extras: Iterable[ExtraResource] = ()) -> dict[str, Any]:
    """The ``/apis`` document."""
    groups = compute_group_versions(list(resources), list(extras))
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_document(g, vs) for g, vs in groups.items()],
    }


def compute_api_group(group: str, resources: Iterable[ResourceInfo],
                      extras: Iterable[ExtraResource] = ()) -> dict[str, Any]:
    """The ``/apis/<group>`` document; NotFound for a group this server does not serve."""
    groups = compute_group_versions(list(resources), list(extras))
    if group not in groups:
        raise NotFound("the server could not find the requested resource")
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, groups[group])}


def compute_api_resource_list(
    group: str, version: str, resources: Iterable[ResourceInfo], extras: Iterable[ExtraResource] = ()
) -> dict[str, Any]:
    """The ``/api/v1`` (group ``""``) or ``/apis/<group>/<version>`` APIResourceList.

    Each resource lists its verbs, short names, categories and singular name; a ``status``
    subresource gets its own ``<plural>/status`` entry. NotFound when nothing is served there.
    """
    entries: list[dict[str, Any]] = []
    found = False
    for r in resources:
        if r.group != group or r.version != version:
            continue
        found = True
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(RESOURCE_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        if "status" in r.subresources:
            entries.append(
                {"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": list(STATUS_VERBS)}
            )
    for e in extras:
        if e.group == group and e.version == version:
            found = True
            if not e.name:
                continue  # a marker that only makes the group version exist
            entry = {"name": e.name, "singularName": "", "namespaced": e.namespaced, "kind": e.kind,
                     "verbs": list(e.verbs)}
            if e.short_names:
                entry["shortNames"] = list(e.short_names)
            entries.append(entry)
    if not found:
        raise NotFound("the server could not find the requested resource")
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}
