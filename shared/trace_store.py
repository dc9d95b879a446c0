"""Trace store of the embedded installation: finished spans kept in a JetStream stream.

Owns: the stream (``<PREFIX>TRACES``, subjects ``<prefix>traces.<trace id>``, bounded by
``max_bytes`` and ``max_age`` so old traces age out on their own), attaching this process's span
exporter to it (one message per trace and export batch, body = OTLP JSON of an
``ExportTraceServiceRequest``) and reading a trace back. The OTLP JSON encoding and the exporter
(OpenTelemetry SDK) are in :mod:`shared.tracing.otlp`; the NATS calls in :class:`shared.bus.Bus`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from shared import tracing
from shared.bus import Bus
from shared.tracing.otlp import JetStreamSpanExporter, compute_otlp_json, parse_otlp_json

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS", "DEFAULT_MAX_BYTES", "JetStreamSpanExporter", "apply_trace_stream",
    "attach_trace_store", "compute_otlp_json", "compute_stream_name", "compute_subject",
    "merge_otlp_documents", "parse_otlp_json", "read_trace",
]

log = logging.getLogger("kubevirt.trace_store")

#: Defaults of the stream bounds: 64 MiB and 24 hours are days of a small installation's operations.
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_MAX_AGE_SECONDS = 24 * 3600


def compute_stream_name(prefix: str) -> str:
    """Stream name for the installation with bucket prefix ``prefix`` (JetStream names allow
    ``[A-Za-z0-9_-]``)."""
    return f"{prefix.upper()}TRACES"


def compute_subject(prefix: str, trace_id: str) -> str:
    """Subject holding the spans of ``trace_id`` (32 hex digits)."""
    return f"{prefix}traces.{trace_id}"


def merge_otlp_documents(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One OTLP JSON document holding the resourceSpans of all ``documents``."""
    return {"resourceSpans": [rs for doc in documents for rs in doc.get("resourceSpans") or []]}


async def apply_trace_stream(bus: Bus, prefix: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                             max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS, replicas: int = 1) -> str:
    """Create (or update the bounds of) the trace stream with ``replicas`` copies; returns its
    name."""
    name = compute_stream_name(prefix)
    await bus.apply_bounded_stream(name, [f"{prefix}traces.>"], max_bytes=max_bytes,
                                   max_age_seconds=max_age_seconds, replicas=replicas)
    return name


async def attach_trace_store(bus: Bus, prefix: str, *, env: Mapping[str, str] | None = None,
                             **bounds: Any) -> JetStreamSpanExporter | None:
    """Create the trace stream and send this process's spans to it — what each service's ``run``
    calls once connected; ``bounds`` are :func:`apply_trace_stream`'s keywords (``max_bytes``,
    ``max_age_seconds``, ``replicas``). Returns the exporter; None (and nothing done) while tracing is off or
    with ``KUBEVIRT_PY_TRACE_STORE=off``. A stream that cannot be made is logged, never fatal:
    tracing must not keep a service from running."""
    env = os.environ if env is None else env
    if not tracing.is_enabled() or env.get("KUBEVIRT_PY_TRACE_STORE", "").lower() == "off":
        return None
    try:
        await apply_trace_stream(bus, prefix, **bounds)
    except Exception as err:  # noqa: BLE001 - see above
        log.warning("trace store unavailable, spans are not kept in JetStream: %s", err)
        return None

    async def publish(subject: str, body: bytes) -> None:
        await bus.jetstream().publish(subject, body)

    exporter = JetStreamSpanExporter(publish, lambda trace_id: compute_subject(prefix, trace_id),
                                     asyncio.get_running_loop())
    tracing.attach_exporter(exporter)
    return exporter


async def read_trace(bus: Bus, prefix: str, trace_id: str, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Every OTLP JSON document stored for ``trace_id``, oldest first ([] when none or when the
    stream does not exist). ``timeout`` (s) bounds the wait for each stored document."""
    bodies = await bus.read_stream_subject(compute_stream_name(prefix), compute_subject(prefix, trace_id),
                                           timeout=timeout)
    return [json.loads(body) for body in bodies]
