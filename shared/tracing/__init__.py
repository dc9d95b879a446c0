"""The one place that sets up OpenTelemetry tracing for every kubevirt-py service.

Owns: the SDK tracer providers (one per service name, so services run in one process — tests,
the in-process loop — still report their own ``service.name``), resource attributes
(``service.name``, ``service.version``, ``service.instance.id``, ``k8s.node.name`` for handlers,
plus whatever ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME`` add), span export (OTLP over
HTTP/protobuf when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
the JetStream trace store of :mod:`shared.trace_store` once a service attached it, an in-memory
exporter for tests), and carrying trace context on stored objects (annotations).

Tracing is off until :func:`setup` (or :func:`use_in_memory_exporter`) ran: every helper here
then returns no-op spans and does no propagation work. ``OTEL_SDK_DISABLED=true`` keeps it off.

Objects carry the context of the latest user operation on them (OpenTelemetry has no rule for
this; it is this project's convention): ``kubevirt-py.io/trace-id`` (32 hex digits, to find the
trace from the object) and ``kubevirt-py.io/traceparent`` (a W3C ``traceparent`` value, so the
reconciles caused by that write become children of the span that wrote it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.errors import Conflict
from shared.sync_error import SyncError

TRACE_ID_ANNOTATION = "kubevirt-py.io/trace-id"
TRACEPARENT_ANNOTATION = "kubevirt-py.io/traceparent"
#: instrumentation scope of every span this project makes
SCOPE = "kubevirt-py"
#: object attribute names (project-specific; the k8s.* ones follow the OTel k8s conventions' style)
ATTR_OBJECT_KEY = "kubevirt.object"
ATTR_REASON = "kubevirt.reason"

_NOOP_TRACER = trace.NoOpTracer()


class _Fanout(SpanProcessor):
    """Forwards finished spans to a list of processors that may grow after providers exist
    (the JetStream exporter is attached once the service has a NATS connection)."""

    def __init__(self) -> None:
        self.processors: list[SpanProcessor] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.processors)


class _State:
    def __init__(self) -> None:
        self.enabled = False
        self.fanout = _Fanout()
        self.providers: dict[str, TracerProvider] = {}
        self.tracers: dict[str, trace.Tracer] = {}
        self.attributes: dict[str, str] = {}
        self.default_service = ""
        self.global_provider_set = False


_state = _State()


def is_enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _state.enabled


def has_current_span() -> bool:
    """Whether tracing is on and a span is current (messages sent outside any traced operation,
    e.g. console bytes, get no span of their own)."""
    return _state.enabled and trace.get_current_span().get_span_context().is_valid


def _project_version() -> str:
    try:
        from importlib.metadata import version
        return version("kubevirt-py")
    except Exception:  # noqa: BLE001 - not installed as a distribution (plain checkout)
        return "0.0.0"


def setup(service_name: str, *, node_name: str | None = None, instance_id: str | None = None,
          exporters: list[SpanExporter] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process as ``service_name`` (e.g. ``virt-handler``).

    ``node_name`` becomes ``k8s.node.name`` (handlers); ``instance_id`` ``service.instance.id``
    (default: a fresh UUID, the OTel recommendation). Exporters: OTLP HTTP/protobuf when
    ``OTEL_EXPORTER_OTLP_ENDPOINT``/``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (the exporter
    reads the other ``OTEL_EXPORTER_OTLP_*`` variables itself), plus ``exporters``; each behind a
    ``BatchSpanProcessor`` (``OTEL_BSP_*`` honoured). Returns False (and does nothing) when
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` with no exporter given.
    Calling it again adds exporters and keeps the first service as the process default.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    batch: list[SpanExporter] = list(exporters or [])
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        batch.append(OTLPSpanExporter())
    for exporter in batch:
        _state.fanout.processors.append(BatchSpanProcessor(exporter))
    attributes = {"service.version": _project_version(),
                  "service.instance.id": instance_id or str(uuid.uuid4()),
                  "host.name": socket.gethostname()}
    if node_name:
        attributes["k8s.node.name"] = node_name
    if not _state.enabled:
        _state.attributes = attributes
        _state.default_service = env.get("OTEL_SERVICE_NAME") or service_name
        _state.enabled = True
        if not _state.global_provider_set:  # the OTel API allows setting it once per process
            trace.set_tracer_provider(_provider(_state.default_service))
            _state.global_provider_set = True
    return True


def attach_exporter(exporter: SpanExporter, *, batch: bool = True) -> None:
    """Also send finished spans to ``exporter`` (batched unless ``batch`` is False)."""
    _state.fanout.processors.append(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))


def use_in_memory_exporter() -> InMemorySpanExporter:
    """Test hook: turn tracing on with every span kept in memory (exported synchronously, so
    ``get_finished_spans()`` is complete once a span ended). Undo with :func:`reset`."""
    exporter = InMemorySpanExporter()
    _state.enabled = True
    _state.attributes = {"service.version": _project_version(), "service.instance.id": str(uuid.uuid4())}
    _state.fanout.processors.append(SimpleSpanProcessor(exporter))
    return exporter


def force_flush(timeout_millis: int = 10000) -> bool:
    """Export every finished span now (blocking; call it from a thread in async code)."""
    return _state.fanout.force_flush(timeout_millis)


def reset() -> None:
    """Test hook: flush, shut down every exporter and turn tracing off again."""
    _state.fanout.shutdown()
    _state.fanout.processors = []
    _state.providers.clear()
    _state.tracers.clear()
    _state.enabled = False


def _provider(service_name: str) -> TracerProvider:
    provider = _state.providers.get(service_name)
    if provider is None:
        # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; our keys win over the SDK defaults.
        resource = Resource.create({**_state.attributes, "service.name": service_name})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(_state.fanout)
        _state.providers[service_name] = provider
    return provider


def get_tracer(service_name: str) -> trace.Tracer:
    """The tracer of ``service_name`` (``virt-api``, ``virt-controller``, ``scheduler-bridge``,
    ``virt-handler``, ...); a no-op tracer while tracing is off. In a process set up for one
    service, other names still get their own resource (in-process tests run every service)."""
    if not _state.enabled:
        return _NOOP_TRACER
    tracer = _state.tracers.get(service_name)
    if tracer is None:
        tracer = _provider(service_name).get_tracer(SCOPE, _project_version())
        _state.tracers[service_name] = tracer
    return tracer


# -- propagation ---------------------------------------------------------------------------------
def inject_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """``headers`` plus the current W3C trace context (``traceparent``/``tracestate``); unchanged
    (possibly None) while tracing is off or no span is current."""
    if not _state.enabled or not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The context carried by ``carrier`` (message headers, HTTP headers), or None when it has none."""
    if not carrier or "traceparent" not in carrier:
        return None
    ctx = propagate.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def compute_traceparent(span: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current span), None when invalid."""
    span_context = (span or trace.get_current_span()).get_span_context()
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def compute_trace_id(span: Span | None = None) -> str | None:
    """32 lower-case hex digits of the trace of ``span`` (default: current), None when invalid."""
    span_context = (span or trace.get_current_span()).get_span_context()
    return f"{span_context.trace_id:032x}" if span_context.is_valid else None


def apply_trace_annotations(obj: MutableMapping[str, Any]) -> None:
    """Record the current span on ``obj`` (annotations ``kubevirt-py.io/trace-id`` and
    ``kubevirt-py.io/traceparent``), before it is written. No-op without a current span."""
    if not _state.enabled:
        return
    traceparent = compute_traceparent()
    if traceparent is None:
        return
    metadata = obj.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    metadata["annotations"] = {**annotations, TRACE_ID_ANNOTATION: traceparent[3:35],
                               TRACEPARENT_ANNOTATION: traceparent}


def trace_id_of(obj: Mapping[str, Any] | None) -> str | None:
    """The trace id recorded on ``obj`` (annotation), or None."""
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(TRACE_ID_ANNOTATION)


def context_of(obj: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The span context recorded on ``obj`` (its ``traceparent`` annotation), or None."""
    traceparent = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(TRACEPARENT_ANNOTATION)
    return extract_context({"traceparent": traceparent}) if traceparent else None


class _SeenVersions:
    """Which (service, span, uid, resourceVersion) were traced already: a periodic resync of an
    unchanged object must not add a span to an old trace every few seconds."""

    LIMIT = 20000

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, str, str]] = set()

    def is_new(self, key: tuple[str, str, str, str]) -> bool:
        if key in self._seen:
            return False
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen.add(key)
        return True


_seen_versions = _SeenVersions()


@contextlib.contextmanager
def object_span(service_name: str, name: str, obj: Mapping[str, Any] | None, *,
                kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
                once_per_version: bool = True, mark_exceptions: bool = True,
                version: str | None = None) -> Iterator[Span]:
    """A span named ``name`` continuing the trace recorded on ``obj`` (child of its
    ``traceparent`` annotation), current inside the block. Yields a non-recording span — and
    costs nothing — while tracing is off, when ``obj`` carries no trace context, or (with
    ``once_per_version``) when this service already traced this span for this object version.
    Exceptions leaving the block mark the span as failed (the SDK records them) unless
    ``mark_exceptions`` is False (the caller decides with :func:`mark_failed`). ``version`` is
    what counts as the object version for ``once_per_version`` (default: its resourceVersion;
    virt-controller adds the state of the VM's VMI, see ``reconcile_tracing``)."""
    parent = context_of(obj) if _state.enabled else None
    if parent is None:
        yield trace.INVALID_SPAN
        return
    metadata = (obj or {}).get("metadata") or {}
    if once_per_version and not _seen_versions.is_new(
            (service_name, name, str(metadata.get("uid")),
             str(metadata.get("resourceVersion")) if version is None else version)):
        yield trace.INVALID_SPAN
        return
    attrs = {ATTR_OBJECT_KEY: f"{metadata.get('namespace') or ''}/{metadata.get('name')}",
             **(attributes or {})}
    with get_tracer(service_name).start_as_current_span(
            name, context=parent, kind=kind, attributes=attrs, record_exception=mark_exceptions,
            set_status_on_exception=mark_exceptions) as span:
        yield span


async def traced_reconcile(service_name: str, name: str, obj: Mapping[str, Any] | None,
                           reconcile: Callable[[], Awaitable[None]], *, version: str | None = None) -> None:
    """Run ``reconcile()`` inside :func:`object_span` (``name`` joined to the trace on ``obj``).

    A ``shared.errors.Conflict`` is a normal race the queue retries: the span gets
    ``kubevirt.requeued=Conflict`` and no error status. A ``shared.sync_error.SyncError`` marks
    the span failed with its own reason; any other exception with its class name. Every
    exception is re-raised for the worker's retry policy. Costs one flag check while tracing is off.
    """
    if not _state.enabled:
        await reconcile()
        return
    with object_span(service_name, name, obj, mark_exceptions=False, version=version) as span:
        try:
            await reconcile()
        except Conflict:
            span.set_attribute("kubevirt.requeued", "Conflict")
            raise
        except SyncError as err:
            mark_failed(err.reason or "SyncFailed", err.message, span)
            raise
        except Exception as err:
            mark_failed(type(err).__name__, str(err), span)
            raise


def child_span(service_name: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Mapping[str, Any] | None = None) -> Any:
    """A span under the current one (context manager); no-op when tracing is off or no span is
    current — libvirt calls made outside any traced operation are not worth a trace each."""
    if not _state.enabled or not trace.get_current_span().get_span_context().is_valid:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return get_tracer(service_name).start_as_current_span(name, kind=kind, attributes=attributes)


def mark_failed(reason: str, message: str, span: Span | None = None) -> None:
    """Set error status ``message`` and ``kubevirt.reason``/``error.type`` = ``reason`` on
    ``span`` (default: the current span); no-op on non-recording spans."""
    span = span or trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(ATTR_REASON, reason)
    span.set_attribute("error.type", reason)
    span.set_status(Status(StatusCode.ERROR, f"{reason}: {message}"))
