"""Trace store of the embedded installation: finished spans kept in a JetStream stream.

Owns: the stream (``<PREFIX>TRACES``, subjects ``<prefix>traces.<trace id>``, bounded by
``max_bytes`` and ``max_age`` so old traces age out on their own), the span exporter writing to
it (one message per trace and export batch, body = OTLP JSON of an ``ExportTraceServiceRequest``),
reading a trace back, and the OTLP JSON encoding itself.

OTLP JSON (opentelemetry-proto ``docs/specification.md``, "JSON Protobuf Encoding"): the protobuf
JSON mapping with lowerCamelCase keys, enums as integers, 64-bit integers (the ``*UnixNano``
times) as decimal strings, and — unlike plain protobuf JSON — ``traceId``/``spanId``/
``parentSpanId`` as hex strings instead of base64. Jaeger and Tempo import this form.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("kubevirt.trace_store")

#: Defaults of the stream bounds: 64 MiB and 24 hours are days of a small installation's operations.
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def compute_stream_name(prefix: str) -> str:
    """Stream name for the installation with bucket prefix ``prefix`` (JetStream names allow
    ``[A-Za-z0-9_-]``)."""
    return f"{prefix.upper()}TRACES"


def compute_subject(prefix: str, trace_id: str) -> str:
    """Subject holding the spans of ``trace_id`` (32 hex digits)."""
    return f"{prefix}traces.{trace_id}"


def _hex_ids(node: Any, to_hex: bool) -> Any:
    """Convert id fields between base64 (protobuf JSON) and hex (OTLP JSON), recursively."""
    if isinstance(node, list):
        return [_hex_ids(item, to_hex) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _ID_KEYS and isinstance(value, str):
            out[key] = base64.b64decode(value).hex() if to_hex else base64.b64encode(bytes.fromhex(value)).decode()
        else:
            out[key] = _hex_ids(value, to_hex)
    return out


def compute_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The OTLP JSON ``{"resourceSpans": [...]}`` document of ``spans``."""
    message = encode_spans(spans)
    as_dict = json_format.MessageToDict(message, use_integers_for_enums=True)
    return _hex_ids(as_dict, to_hex=True)


def parse_otlp_json(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """Parse an OTLP JSON document into the protobuf message (validates names and types).
    Raises ``google.protobuf.json_format.ParseError`` or ``ValueError`` on malformed input."""
    return json_format.ParseDict(_hex_ids(document, to_hex=False), ExportTraceServiceRequest())


def merge_otlp_documents(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One OTLP JSON document holding the resourceSpans of all ``documents``."""
    return {"resourceSpans": [rs for doc in documents for rs in doc.get("resourceSpans") or []]}


async def apply_trace_stream(bus: Any, prefix: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                             max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> str:
    """Create (or update the bounds of) the trace stream; returns its name."""
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
    name = compute_stream_name(prefix)
    config = StreamConfig(name=name, subjects=[f"{prefix}traces.>"], max_bytes=max_bytes,
                          max_age=max_age_seconds, storage=StorageType.FILE, discard=DiscardPolicy.OLD)
    js = bus.jetstream()
    try:
        await js.add_stream(config)
    except Exception:  # noqa: BLE001 - exists with other bounds: update it
        await js.update_stream(config)
    return name


class JetStreamSpanExporter(SpanExporter):
    """Span exporter publishing to the trace stream over the service's own NATS connection.

    ``export`` is called on the BatchSpanProcessor's thread; the publish runs on ``loop`` (the
    service's event loop) and is not waited for — a slow or lost NATS must never stall the
    service. :meth:`drain` (async) waits for what was handed over.
    """

    def __init__(self, bus: Any, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self._bus = bus
        self._prefix = prefix
        self._loop = loop
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        by_trace: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            by_trace.setdefault(f"{span.context.trace_id:032x}", []).append(span)
        if self._loop.is_closed():
            return SpanExportResult.FAILURE
        for trace_id, group in by_trace.items():
            body = json.dumps(compute_otlp_json(group), separators=(",", ":")).encode()
            future = asyncio.run_coroutine_threadsafe(self._publish(compute_subject(self._prefix, trace_id), body),
                                                      self._loop)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._done)
        return SpanExportResult.SUCCESS

    async def _publish(self, subject: str, body: bytes) -> None:
        await self._bus.jetstream().publish(subject, body)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self.failures += 1
            log.debug("trace export failed: %s", future.exception())

    async def drain(self) -> None:
        """Wait for every publish handed to the loop so far (call on the loop)."""
        with self._lock:
            pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def attach_trace_store(bus: Any, prefix: str, *, env: dict[str, str] | None = None,
                             **bounds: Any) -> JetStreamSpanExporter | None:
    """Create the trace stream and send this process's spans to it — what each service's ``run``
    calls once connected. Returns the exporter; None (and nothing done) while tracing is off or
    with ``KUBEVIRT_PY_TRACE_STORE=off``. A stream that cannot be made is logged, never fatal:
    tracing must not keep a service from running."""
    import os
    from shared import tracing
    env = os.environ if env is None else env
    if not tracing.is_enabled() or env.get("KUBEVIRT_PY_TRACE_STORE", "").lower() == "off":
        return None
    try:
        await apply_trace_stream(bus, prefix, **bounds)
    except Exception as err:  # noqa: BLE001 - see above
        log.warning("trace store unavailable, spans are not kept in JetStream: %s", err)
        return None
    exporter = JetStreamSpanExporter(bus, prefix, asyncio.get_running_loop())
    tracing.attach_exporter(exporter)
    return exporter


async def read_trace(bus: Any, prefix: str, trace_id: str, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Every OTLP JSON document stored for ``trace_id``, oldest first ([] when none or when the
    stream does not exist)."""
    import nats.js.errors
    js = bus.jetstream()
    subject = compute_subject(prefix, trace_id)
    try:
        info = await js.stream_info(compute_stream_name(prefix), subjects_filter=subject)
    except nats.js.errors.NotFoundError:
        return []
    count = (info.state.subjects or {}).get(subject, 0)
    if not count:
        return []
    sub = await js.subscribe(subject, ordered_consumer=True)
    documents = []
    try:
        while len(documents) < count:
            msg = await sub.next_msg(timeout=timeout)
            documents.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return documents

