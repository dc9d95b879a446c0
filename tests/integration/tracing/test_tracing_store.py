"""The JetStream trace store: a bounded stream, spans read back by trace id (real nats-server)."""

from __future__ import annotations

import asyncio

from shared import trace_store, tracing


async def test_the_stream_is_bounded_and_spans_come_back_by_trace_id(object_store):
    memory = tracing.use_in_memory_exporter()
    try:
        exporter = await trace_store.attach_trace_store(object_store.bus, object_store.prefix, env={},
                                                        max_bytes=2**20, max_age_seconds=60)
        info = await object_store.bus.jetstream().stream_info(trace_store.compute_stream_name(object_store.prefix))
        assert (info.config.max_bytes, info.config.max_age) == (2**20, 60)
        with tracing.get_tracer("virt-api").start_as_current_span("op") as span:
            pass
        trace_id = f"{span.get_span_context().trace_id:032x}"
        await asyncio.to_thread(tracing.force_flush)
        await exporter.drain()
        (document,) = await trace_store.read_trace(object_store.bus, object_store.prefix, trace_id)
        (stored,) = [s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
        assert (stored["traceId"], stored["name"]) == (trace_id, "op")
        assert await trace_store.read_trace(object_store.bus, object_store.prefix, "0" * 32) == []
        assert len(memory.get_finished_spans()) == 1
    finally:
        tracing.reset()
        await object_store.bus.jetstream().delete_stream(trace_store.compute_stream_name(object_store.prefix))


async def test_no_store_without_tracing_or_when_turned_off(object_store):
    assert await trace_store.attach_trace_store(object_store.bus, object_store.prefix) is None
    tracing.use_in_memory_exporter()
    try:
        assert await trace_store.attach_trace_store(object_store.bus, object_store.prefix,
                                                    env={"KUBEVIRT_PY_TRACE_STORE": "off"}) is None
    finally:
        tracing.reset()
    assert await trace_store.read_trace(object_store.bus, object_store.prefix, "a" * 32) == []
