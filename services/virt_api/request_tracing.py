"""virt-api request tracing: one SERVER span per HTTP request and the trace id in the response.

Owns: the aiohttp middleware (span named ``{METHOD} {route}`` with the OTel HTTP server
attributes, continuing a caller's W3C ``traceparent`` header), and the response headers
``X-Trace-Id`` (32 hex digits) and ``traceresponse`` (W3C Trace Context Level 2 draft:
``00-<trace id>-<span id>-<flags>``), added just before headers are sent so streamed answers
(watches) carry them too. Nothing happens while :mod:`shared.tracing` is off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared import tracing

SERVICE = "virt-api"
TRACE_ID_HEADER = "X-Trace-Id"


def compute_route(path: str) -> str:
    """Low-cardinality route of a Kubernetes API path (no namespace or object names):
    ``/apis/kubevirt.io/v1/namespaces/default/virtualmachines/vm1/start`` ->
    ``/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/start``."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return path
    head = 2 if parts[0] == "api" else 3  # /api/v1, /apis/<group>/<version>
    out, rest = parts[:head], parts[head:]
    if len(rest) >= 2 and rest[0] == "namespaces":
        out += ["namespaces", "{namespace}"]
        rest = rest[2:]
    if rest:
        out.append(rest[0])
    if len(rest) >= 2:
        out.append("{name}")
    out += rest[2:3]
    return "/" + "/".join(out)


@web.middleware
async def request_spans(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Run ``handler`` inside a SERVER span (outermost middleware, so error bodies are inside)."""
    if not tracing.is_enabled():
        return await handler(request)
    route = compute_route(request.path)
    parent = tracing.extract_context(request.headers)
    tracer = tracing.get_tracer(SERVICE)
    with tracer.start_as_current_span(
            f"{request.method} {route}", context=parent, kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route, "url.path": request.path,
                        "url.scheme": request.scheme}) as span:
        response = await handler(request)
        if not response.prepared:  # plain answers are sent after the middleware, outside the span
            await add_trace_headers(request, response)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR, response.reason or str(response.status)))
        elif response.status >= 400:
            span.set_attribute(tracing.ATTR_REASON, response.reason or str(response.status))
        return response


async def add_trace_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The current trace id into the response headers (``on_response_prepare`` signal for
    streamed answers, prepared inside the span; the middleware calls it for plain ones)."""
    traceparent = tracing.compute_traceparent() if tracing.is_enabled() else None
    if traceparent is not None:
        response.headers[TRACE_ID_HEADER] = traceparent[3:35]
        response.headers["traceresponse"] = traceparent


def apply_request_tracing(app: web.Application) -> None:
    """Install the response-header hook on ``app`` (the middleware goes into the middleware list)."""
    app.on_response_prepare.append(add_trace_headers)
