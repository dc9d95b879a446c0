"""Resource URL parsing and verb dispatch.

Owns: turning ``/api/v1/...`` and ``/apis/<group>/<version>/...`` paths into a
:class:`~services.virt_api.rest.Target` (or a subresource call for
``subresources.kubevirt.io``), and picking the handler from the HTTP method, as kube-apiserver's
path layout defines: ``[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]``. Unknown resources
answer 404, wrong methods 405, both as Status bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from services.virt_api.events_route import handle_events
from services.virt_api.namespaces import handle_namespaces
from services.virt_api.negotiation import encode_response, read_body
from services.virt_api.rest import ResourceHandlers, Target
from services.virt_api.subresources import SUBRESOURCE_GROUP, SubresourceCall, SubresourceRegistry
from shared.api.resources import find_resource
from shared.errors import MethodNotAllowed, NotFound
from shared.events_recorder import EVENTS_PLURAL


@dataclass(frozen=True)
class ParsedPath:
    """The parts of a resource URL after ``/api`` or ``/apis`` (``group`` is ``""`` for core)."""

    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str | None


def parse_resource_path(prefix: str, tail: str) -> ParsedPath:
    """Split ``tail`` (what follows ``/api/`` or ``/apis/``) into its parts; NotFound when the
    shape is not a resource path (e.g. too many segments or an empty segment)."""
    segments = tail.strip("/").split("/") if tail.strip("/") else []
    if any(not s for s in segments):
        raise NotFound("the server could not find the requested resource")
    if prefix == "api":
        if not segments:
            raise NotFound("the server could not find the requested resource")
        group, rest = "", segments
    else:
        if len(segments) < 2:
            raise NotFound("the server could not find the requested resource")
        group, rest = segments[0], segments[1:]
    version, rest = rest[0], rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        raise NotFound("the server could not find the requested resource")
    plural = rest[0]
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    return ParsedPath(group, version, namespace, plural, name, sub)


class ResourceRouter:
    """Dispatches resource URLs to :class:`ResourceHandlers` or the subresource registry."""

    def __init__(self, handlers: ResourceHandlers, subresources: SubresourceRegistry) -> None:
        self.handlers = handlers
        self.subresources = subresources

    async def handle(self, request: web.Request) -> web.StreamResponse:
        prefix = "api" if request.path.startswith("/api/") else "apis"
        parsed = parse_resource_path(prefix, request.match_info.get("tail", ""))
        method = request.method
        if parsed.group == SUBRESOURCE_GROUP:
            return await self._subresource(request, parsed)
        if (parsed.group, parsed.version, parsed.plural) == ("", "v1", "namespaces") and parsed.namespace is None \
                and parsed.subresource is None:
            return await handle_namespaces(request, self.handlers.store, parsed.name)
        if (parsed.group, parsed.version, parsed.plural) == ("", "v1", EVENTS_PLURAL) and parsed.subresource is None:
            if parsed.name is not None and parsed.namespace is None:
                raise NotFound("the server could not find the requested resource")
            return await handle_events(request, self.handlers.store, parsed.namespace, parsed.name)
        info = find_resource(parsed.group, parsed.version, parsed.plural)
        if parsed.namespace is not None and not info.namespaced:
            raise NotFound("the server could not find the requested resource")
        namespace = parsed.namespace if info.namespaced else None
        target = Target(info, namespace, parsed.name, parsed.subresource)
        h = self.handlers
        if parsed.name is None:
            verbs = {"GET": h.list, "POST": h.create, "DELETE": h.delete_collection}
        elif parsed.subresource is None:
            verbs = {"GET": h.get, "PUT": h.update, "PATCH": h.patch, "DELETE": h.delete}
        elif parsed.subresource == "status" and "status" in info.subresources:
            verbs = {"GET": h.get, "PUT": h.update, "PATCH": h.patch}
        else:
            raise NotFound("the server could not find the requested resource")
        if info.namespaced and namespace is None and parsed.name is not None:
            raise NotFound("the server could not find the requested resource")
        handler = verbs.get(method)
        if handler is None:
            raise MethodNotAllowed(f"the server does not allow this method on the requested resource ({method})")
        return await handler(request, target)

    async def _subresource(self, request: web.Request, parsed: ParsedPath) -> web.StreamResponse:
        if parsed.name is None or parsed.subresource is None or not self.subresources.has_route(
            parsed.plural, parsed.subresource
        ):
            raise NotFound("the server could not find the requested resource")
        handler = self.subresources.find(parsed.plural, parsed.subresource, request.method)
        if handler is None:
            raise MethodNotAllowed(f"the server does not allow this method on the requested resource "
                                   f"({request.method})")
        body = b"" if request.method == "GET" else await read_body(request)
        call = SubresourceCall(request, self.handlers.store, parsed.group, parsed.version, parsed.plural,
                               parsed.namespace, parsed.name, parsed.subresource, body)
        result = await handler(call)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=202 if call.status == 200 else call.status)
        return encode_response(result, status=call.status)
