"""Finished spans as OTLP JSON, and the span exporter that hands them to the trace store.

Owns: the OTLP JSON encoding (opentelemetry-proto ``docs/specification.md``, "JSON Protobuf
Encoding": the protobuf JSON mapping with lowerCamelCase keys, enums as integers, 64-bit integers
— the ``*UnixNano`` times — as decimal strings, and, unlike plain protobuf JSON,
``traceId``/``spanId``/``parentSpanId`` as hex strings instead of base64; Jaeger and Tempo import
this form) and :class:`JetStreamSpanExporter`. Where the documents go (stream, subjects, the NATS
connection) is :mod:`shared.trace_store`'s business: the exporter gets a publish function.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("kubevirt.trace_store")

_ID_KEYS = ("traceId", "spanId", "parentSpanId")

#: ``publish(subject, body)``: sends one OTLP JSON document (bytes) on ``subject``.
Publish = Callable[[str, bytes], Awaitable[None]]


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
    document: dict[str, Any] = _hex_ids(as_dict, to_hex=True)
    return document


def parse_otlp_json(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """Parse an OTLP JSON document into the protobuf message (validates names and types).
    Raises ``google.protobuf.json_format.ParseError`` or ``ValueError`` on malformed input."""
    request = ExportTraceServiceRequest()
    json_format.ParseDict(_hex_ids(document, to_hex=False), request)
    return request


class JetStreamSpanExporter(SpanExporter):
    """Span exporter publishing one OTLP JSON document per trace and export batch, on the
    subject ``subject_of(trace_id)`` (``trace_id``: 32 hex digits) through ``publish`` — the
    trace store's publish over the service's own NATS connection.

    ``export`` is called on the BatchSpanProcessor's thread; the publish runs on ``loop`` (the
    service's event loop) and is not waited for — a slow or lost NATS must never stall the
    service. :meth:`drain` (async) waits for what was handed over; ``failures`` counts the
    publishes that raised.
    """

    def __init__(self, publish: Publish, subject_of: Callable[[str], str], loop: asyncio.AbstractEventLoop) -> None:
        self._publish = publish
        self._subject_of = subject_of
        self._loop = loop
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        by_trace: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            context = span.context
            if context is None:
                continue
            by_trace.setdefault(f"{context.trace_id:032x}", []).append(span)
        if self._loop.is_closed():
            return SpanExportResult.FAILURE
        for trace_id, group in by_trace.items():
            body = json.dumps(compute_otlp_json(group), separators=(",", ":")).encode()
            future = asyncio.run_coroutine_threadsafe(self._send(self._subject_of(trace_id), body), self._loop)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._done)
        return SpanExportResult.SUCCESS

    async def _send(self, subject: str, body: bytes) -> None:
        await self._publish(subject, body)

    def _done(self, future: Future[None]) -> None:
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
