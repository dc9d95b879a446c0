"""virt-api's request metrics, named as kube-apiserver's: ``apiserver_request_total{verb, group,
resource, subresource, code}`` and ``apiserver_request_duration_seconds`` (k8s.io/apiserver
``pkg/endpoints/metrics``), the aiohttp middleware that records them and the pure
classification of a request into kube-apiserver's labels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from shared.metrics import LATENCY_BUCKETS

API_REQUESTS = Counter(
    "apiserver_request", "Counter of virt-api requests by verb, resource and HTTP code.",
    ["verb", "group", "resource", "subresource", "code"],
)
API_REQUEST_DURATION = Histogram(
    "apiserver_request_duration_seconds", "virt-api response latency by verb and resource.",
    ["verb", "group", "resource"], buckets=LATENCY_BUCKETS,
)

#: Where :func:`remember_prepared_response` keeps a request's response once its headers are sent.
PREPARED_RESPONSE_KEY = web.RequestKey("kubevirt_py_prepared_response", web.StreamResponse)


async def remember_prepared_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal handler (add it to the app that uses
    :func:`api_request_middleware`): notes the response whose status line is being sent, so a
    request the client ends afterwards is counted with the status it got."""
    request[PREPARED_RESPONSE_KEY] = response


def compute_ended_request_code(prepared: web.StreamResponse | None) -> int:
    """The code counted for a request its client ended (disconnect, cancelled handler): the
    status already sent — 200 for a watch, 101 for a console's WebSocket — as kube-apiserver's
    instrumentation records what its response writer wrote (a client going away is no server
    error); 0, as kube-apiserver's for a handler that wrote nothing, when no status was sent."""
    return prepared.status if prepared is not None else 0


def api_request_middleware(classify: Callable[[web.Request], tuple[str, str, str, str]]) -> Any:
    """aiohttp middleware counting every request in ``apiserver_request_total`` and timing it in
    ``apiserver_request_duration_seconds``. ``classify(request)`` gives (verb, group, resource,
    subresource) as kube-apiserver labels them (verb: get, list, watch, create, update, patch,
    delete, deletecollection). A request the client ended is counted with the status it was sent
    (:func:`compute_ended_request_code`; needs :func:`remember_prepared_response` on the app)."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        verb, group, resource, sub = classify(request)
        started = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            code = compute_ended_request_code(request.get(PREPARED_RESPONSE_KEY))
            raise
        finally:
            API_REQUESTS.labels(verb, group, resource, sub, str(code)).inc()
            if verb != "watch":
                API_REQUEST_DURATION.labels(verb, group, resource).observe(time.perf_counter() - started)

    return middleware


def compute_request_labels(request: web.Request) -> tuple[str, str, str, str]:
    """kube-apiserver's (verb, group, resource, subresource) of a virt-api request; resource ""
    for non-resource paths (discovery, health). Pure function of method, path and query."""
    parts = [p for p in request.path.split("/") if p]
    group = resource = sub = ""
    name = None
    if parts[:1] == ["api"] and len(parts) >= 3:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        rest = []
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if rest:
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
    method = request.method.upper()
    if method in ("GET", "HEAD"):
        if name is None and resource:
            verb = "watch" if request.query.get("watch") in ("1", "true", "True") else "list"
        else:
            verb = "get"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name is not None else "deletecollection"}.get(method, method.lower())
    return verb, group, resource, sub
