"""Read-only core ``v1`` Namespaces, synthesized.

kubevirt-py has no Namespace objects: any valid namespace name can hold objects, as if every
namespace existed and were ``Active``. kubectl still asks for ``/api/v1/namespaces/<name>`` (for
example to word a NotFound message), so this module answers GET of one namespace with a
synthetic ``Namespace`` and the list with the namespaces that hold objects (plus ``default``).
Writes are refused with 405.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.virt_api.discovery import ExtraResource
from services.virt_api.negotiation import encode_response
from services.virt_api.object_meta import DNS1123_LABEL
from shared.api.resources import RESOURCES
from shared.errors import MethodNotAllowed, NotFound

#: The discovery entry in ``/api/v1``.
NAMESPACES_DISCOVERY = ExtraResource("", "v1", "namespaces", False, ("get", "list"), kind="Namespace",
                                     short_names=("ns",))


def compute_namespace(name: str) -> dict[str, Any]:
    """The synthetic Namespace object for ``name``."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


async def handle_namespaces(request: web.Request, store: Any, name: str | None) -> web.StreamResponse:
    """GET ``/api/v1/namespaces[/<name>]``; 404 for a name that is not a DNS label, 405 for writes."""
    if request.method != "GET":
        raise MethodNotAllowed("namespaces are read-only in kubevirt-py (every namespace exists)")
    if name is not None:
        if not DNS1123_LABEL.match(name) or len(name) > 63:
            raise NotFound(f'namespaces "{name}" not found', kind="namespaces", name=name)
        return encode_response(compute_namespace(name))
    names = {"default"}
    for info in RESOURCES:
        if info.namespaced:
            items, _ = await store.list(info.plural, None)
            names.update(i["metadata"].get("namespace") for i in items if i["metadata"].get("namespace"))
    return encode_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
                            "items": [compute_namespace(n) for n in sorted(names)]})
