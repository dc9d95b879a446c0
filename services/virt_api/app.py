"""The virt-api aiohttp application: routes, middlewares, and the non-resource endpoints.

Owns: wiring — the error middleware (every failure becomes a Kubernetes ``Status`` body, never a
stack trace), authentication and authorization (:mod:`services.virt_api.auth`), the discovery
(:mod:`services.virt_api.discovery`) and OpenAPI (:mod:`services.virt_api.openapi`) endpoints,
health probes, and handing resource URLs to :class:`services.virt_api.routing.ResourceRouter`.
Process concerns (ports, TLS, NATS connection, signals) are in :mod:`services.virt_api.main`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.virt_api import discovery
from services.virt_api.auth import RequestAuth, auth_middleware
from services.virt_api.events_route import EVENTS_DISCOVERY
from services.virt_api.namespaces import NAMESPACES_DISCOVERY
from services.virt_api.negotiation import MAX_BODY_BYTES, encode_response
from services.virt_api.request_tracing import apply_request_tracing, request_spans
from services.virt_api.rest import ResourceHandlers
from services.virt_api.routing import ResourceRouter
from services.virt_api.subresources import SubresourceRegistry
from shared.api.resources import RESOURCES
from shared.metrics import apply_metrics_route
from shared.request_metrics import api_request_middleware, compute_request_labels, remember_prepared_response
from shared.errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)

log = logging.getLogger("kubevirt.virt_api")

STORE_KEY = web.AppKey("store", object)
SUBRESOURCES_KEY = web.AppKey("subresources", SubresourceRegistry)

_HTTP_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest, 404: NotFound, 405: MethodNotAllowed, 413: RequestTooLarge, 415: UnsupportedMediaType,
}


def compute_status_for_exception(err: BaseException) -> ApiError:
    """The ApiError a failure is shown as: ApiErrors as they are; aiohttp's HTTP errors by code;
    NATS failures that escaped the store as 503; anything else as a 500 naming only the type."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, web.HTTPException):
        cls = _HTTP_ERRORS.get(err.status)
        if cls is not None:
            return cls(err.reason if err.status != 404 else "the server could not find the requested resource")
        return ApiError(err.reason, code=err.status, reason=err.reason.replace(" ", ""))
    if type(err).__module__.split(".")[0] == "nats":
        return ServiceUnavailable(f"the object store is unavailable: {type(err).__name__}: {err}")
    return InternalError(f"Internal error occurred: {type(err).__name__}")


def status_response(err: ApiError) -> web.Response:
    """The JSON Status response for ``err`` (with ``Retry-After`` when it says so, and 1 s for every
    503 and 504: the store is briefly unavailable or the outcome unknown, and a client that honours
    ``Retry-After`` — client-go does for 503/429 — should come back soon rather than give up)."""
    resp = encode_response(err.to_status(), status=err.code)
    retry_after = err.retry_after_seconds if err.retry_after_seconds is not None else (
        1 if err.code in (503, 504) else None)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    if err.code == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="kubevirt-py"'
    return resp


@web.middleware
async def status_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Outermost middleware: render every error as a Status body; log unexpected ones."""
    try:
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return status_response(compute_status_for_exception(exc))
    except ApiError as err:
        if err.code >= 500:
            log.warning("%s %s: %s", request.method, request.path, err.message)
        return status_response(err)
    except Exception as err:  # noqa: BLE001 - the client gets a Status, the log gets the trace
        log.exception("%s %s failed", request.method, request.path)
        return status_response(compute_status_for_exception(err))


async def default_readiness(store: Any) -> None:
    """Ready when the store answers a small list within 2 s (raises otherwise)."""
    async with asyncio.timeout(2.0):
        await store.list("nodes", None)


def create_app(
    store: Any,
    *,
    token: str | None,
    subresources: SubresourceRegistry | None = None,
    server_address: str = "127.0.0.1:8443",
    readiness: Callable[[Any], Awaitable[None]] = default_readiness,
    admit: Any = None,
    auth: RequestAuth | None = None,
) -> web.Application:
    """Build the application around a connected ObjectStore.

    ``auth`` decides who may do what (:mod:`services.virt_api.auth`); without it, ``token`` is the
    installation's bearer token, and None for both disables authentication (only for tests that
    need it). ``subresources`` holds
    extra subresource handlers (see :mod:`services.virt_api.subresources`); ``server_address`` is
    what ``/api`` advertises. The store is not closed by the app.
    """
    middlewares: list[Any] = [request_spans, api_request_middleware(compute_request_labels), status_errors]
    if auth is None and token is not None:
        auth = RequestAuth(token=token)
    if auth is not None:
        middlewares.append(auth_middleware(auth))
    # client_max_size is a backstop; bodies are read with the same limit in negotiation.read_body.
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES + 1)
    apply_request_tracing(app)
    app.on_response_prepare.append(remember_prepared_response)  # status of client-ended requests
    registry = subresources or SubresourceRegistry()
    app[STORE_KEY] = store
    app[SUBRESOURCES_KEY] = registry
    router = ResourceRouter(ResourceHandlers(store, admit=admit), registry)
    endpoints = _Endpoints(store, registry, router, server_address, readiness)
    app.router.add_get("/healthz", endpoints.healthz)
    apply_metrics_route(app)  # behind the bearer token, as the rest of the API
    app.router.add_get("/livez", endpoints.healthz)
    app.router.add_get("/readyz", endpoints.readyz)
    app.router.add_get("/version", endpoints.version)
    app.router.add_get("/openapi/v2", endpoints.openapi_v2)
    app.router.add_get("/openapi/v3", endpoints.openapi_v3_index)
    app.router.add_get("/openapi/v3/{tail:.+}", endpoints.openapi_v3)
    app.router.add_route("*", "/api", endpoints.core)
    app.router.add_route("*", "/api/{tail:.*}", endpoints.core)
    app.router.add_route("*", "/apis", endpoints.groups)
    app.router.add_route("*", "/apis/{tail:.*}", endpoints.groups)
    return app


class _Endpoints:
    """Request handlers for everything that is not a stored object."""

    def __init__(self, store: Any, registry: SubresourceRegistry, router: ResourceRouter, server_address: str,
                 readiness: Callable[[Any], Awaitable[None]]) -> None:
        self.store = store
        self.registry = registry
        self.router = router
        self.server_address = server_address
        self.readiness = readiness
        self._openapi: dict[Any, dict[str, Any]] = {}

    def _extras(self) -> list[discovery.ExtraResource]:
        return self.registry.group_versions() + self.registry.discovery_entries()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await self.readiness(self.store)
        except Exception as err:  # noqa: BLE001 - any failure means "not ready"
            raise ServiceUnavailable(f"not ready: the object store does not answer ({type(err).__name__})") from err
        return web.Response(text="ok")

    async def version(self, request: web.Request) -> web.Response:
        return encode_response(discovery.SERVER_VERSION)

    async def core(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "").strip("/")
        if tail in ("", "v1"):
            _require_get(request)
            if not tail:
                return encode_response(discovery.compute_api_versions(self.server_address))
            return encode_response(discovery.compute_api_resource_list("", "v1", RESOURCES,
                                                                       [NAMESPACES_DISCOVERY, EVENTS_DISCOVERY]))
        return await self.router.handle(request)

    async def groups(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "").strip("/")
        segments = tail.split("/") if tail else []
        if len(segments) <= 2:
            _require_get(request)
            if not segments:
                return encode_response(discovery.compute_api_group_list(RESOURCES, self._extras()))
            if len(segments) == 1:
                return encode_response(discovery.compute_api_group(segments[0], RESOURCES, self._extras()))
            return encode_response(
                discovery.compute_api_resource_list(segments[0], segments[1], RESOURCES, self._extras())
            )
        return await self.router.handle(request)

    async def openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if accept and not any(
            t.split(";")[0].strip() in ("application/json", "*/*", "application/*") for t in accept.split(",")
        ):
            # client-go asks for protobuf first; it falls back when told "not acceptable".
            raise ApiError("only application/json is served for /openapi/v2", code=406, reason="NotAcceptable")
        return encode_response(self._cached(("v2",), _openapi().openapi_v2))

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        return encode_response(self._cached(("v3",), _openapi().openapi_v3_index))

    async def openapi_v3(self, request: web.Request) -> web.Response:
        segments = request.match_info["tail"].strip("/").split("/")
        if segments[:1] == ["api"] and len(segments) == 2:
            group, version = "", segments[1]
        elif segments[:1] == ["apis"] and len(segments) == 3:
            group, version = segments[1], segments[2]
        else:
            raise NotFound("the server could not find the requested resource")
        return encode_response(self._cached(("v3", group, version), lambda: _openapi().openapi_v3(group, version)))

    def _cached(self, key: Any, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if key not in self._openapi:
            self._openapi[key] = build()
        return self._openapi[key]


def _openapi() -> Any:
    from services.virt_api import openapi  # imported on first use: building the schemas takes a moment

    return openapi


def _require_get(request: web.Request) -> None:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource ({request.method})")
