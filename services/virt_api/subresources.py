"""The registration point for subresource handlers served by virt-api besides ``/status``.

KubeVirt serves lifecycle and streaming subresources under
``/apis/subresources.kubevirt.io/v1/namespaces/<ns>/<plural>/<name>/<subresource>`` (``start``,
``stop``, ``restart``, ``migrate``, ``pause``, ``unpause``, ``console``, ``vnc``, ...; see
kubevirt-api.md §5); kubevirt-py adds ``trace`` (:mod:`services.virt_api.trace_subresource`).
This module owns only the table of handlers and the call object they get;
the handlers themselves live with the service that knows the operation.

How another service adds one (one entry each)::

    # services/<svc>/virt_api_subresources.py
    from services.virt_api.subresources import SubresourceCall, SubresourceRegistry

    async def start_vm(call: SubresourceCall) -> web.StreamResponse | dict | None: ...

    def register(registry: SubresourceRegistry) -> None:
        registry.add("virtualmachines", "start", "PUT", start_vm)

and append the module name to :data:`SUBRESOURCE_MODULES`; ``virt-api`` imports every module in
that list at start and calls its ``register(registry)``. A handler returning a dict gets it as
JSON with status 200 (``call.status`` may change it, e.g. 202); ``None`` gives an empty 202
body as KubeVirt's PUT subresources answer; a ``web.StreamResponse`` (WebSocket) is returned as is.
Raise :mod:`shared.errors` exceptions for failures; they become Status bodies.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.virt_api.discovery import ExtraResource

SUBRESOURCE_GROUP = "subresources.kubevirt.io"
SUBRESOURCE_VERSIONS = ("v1", "v1alpha3")

#: Modules (import paths) with a ``register(registry)`` function, imported by virt-api's main.
#: Add one line per module that brings subresources. A module that cannot be imported stops virt-api.
SUBRESOURCE_MODULES: list[str] = [
    "services.virt_api.lifecycle",
    "services.virt_api.console",
    "services.virt_api.guestosinfo",
    "services.virt_api.migrate",
    "services.virt_api.trace_subresource",
]


@dataclass
class SubresourceCall:
    """Everything a subresource handler gets.

    ``store`` is the :class:`shared.store.ObjectStore`; ``body`` the raw request body (may be
    empty; decode with :func:`services.virt_api.negotiation.decode_object`); ``namespace`` is
    None for cluster-scoped targets. ``status`` is the HTTP code used when the handler returns
    a dict (default 200).
    """

    request: web.Request
    store: Any
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str
    subresource: str
    body: bytes
    status: int = 200


SubresourceHandler = Callable[[SubresourceCall], Awaitable["web.StreamResponse | dict[str, Any] | None"]]


@dataclass
class SubresourceRegistry:
    """Handlers keyed by (plural, subresource) then HTTP method, served in every version of
    ``subresources.kubevirt.io`` (both namespaced and, for cluster-scoped plurals, not)."""

    handlers: dict[tuple[str, str], dict[str, SubresourceHandler]] = field(default_factory=dict)
    namespaced: dict[str, bool] = field(default_factory=dict)

    def add(
        self, plural: str, subresource: str, method: str, handler: SubresourceHandler, *, namespaced: bool = True
    ) -> None:
        """Serve ``method`` (``"PUT"``, ``"GET"``, ...) on ``<plural>/<name>/<subresource>``.
        Raises ValueError when the same route is registered twice."""
        methods = self.handlers.setdefault((plural, subresource), {})
        method = method.upper()
        if method in methods:
            raise ValueError(f"subresource {plural}/{subresource} {method} is already registered")
        methods[method] = handler
        self.namespaced[plural] = namespaced

    def find(self, plural: str, subresource: str, method: str) -> SubresourceHandler | None:
        """The handler, or None when the route or the method is not registered."""
        return self.handlers.get((plural, subresource), {}).get(method.upper())

    def has_route(self, plural: str, subresource: str) -> bool:
        return (plural, subresource) in self.handlers

    def discovery_entries(self) -> list[ExtraResource]:
        """``<plural>/<subresource>`` entries for the subresources group's APIResourceLists, and
        an empty list entry per version when nothing is registered (the group always exists)."""
        entries = []
        for version in SUBRESOURCE_VERSIONS:
            for (plural, sub), methods in sorted(self.handlers.items()):
                verbs = tuple(sorted({"PUT": "update", "GET": "get", "POST": "create", "PATCH": "patch",
                                      "DELETE": "delete"}.get(m, m.lower()) for m in methods))
                entries.append(ExtraResource(SUBRESOURCE_GROUP, version, f"{plural}/{sub}",
                                             self.namespaced.get(plural, True), verbs))
        return entries

    def group_versions(self) -> list[ExtraResource]:
        """Marker entries so the group is listed in ``/apis`` even with no handlers registered."""
        return [ExtraResource(SUBRESOURCE_GROUP, v, "", True, ()) for v in SUBRESOURCE_VERSIONS]


def apply_subresource_modules(registry: SubresourceRegistry, modules: list[str] | None = None) -> list[str]:
    """Import each module in ``modules`` (default :data:`SUBRESOURCE_MODULES`) and call its
    ``register(registry)``; return the names that were registered. A module that cannot be
    imported raises ``ImportError``: virt-api does not start with part of its API missing."""
    done = []
    for name in SUBRESOURCE_MODULES if modules is None else modules:
        module = importlib.import_module(name)
        module.register(registry)
        done.append(name)
    return done
