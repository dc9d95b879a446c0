"""W3C trace context over NATS through shared.bus: injected on publish and request, extracted on
receive, spans per the OTel messaging conventions (real nats-server)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind

from shared import bus as bus_module
from shared import tracing


@pytest.fixture
def memory():
    exporter = tracing.use_in_memory_exporter()
    yield exporter
    tracing.reset()


async def test_publish_carries_the_trace_to_the_subscriber(object_store, memory):
    bus = object_store.bus
    got = asyncio.get_running_loop().create_future()

    async def on_message(msg):
        got.set_result((msg.headers or {}).get("traceparent"))

    sub = await bus.subscribe("kubevirt.v1.domain.node-a.default.vm1", cb=on_message)
    tracer = tracing.get_tracer("virt-handler")
    with tracer.start_as_current_span("sync VirtualMachineInstance") as parent:
        await bus.publish("kubevirt.v1.domain.node-a.default.vm1", b"event")
    header = await asyncio.wait_for(got, 5)
    await sub.unsubscribe()
    await asyncio.sleep(0.05)  # the consumer span ends after the callback returned

    spans = {s.name: s for s in memory.get_finished_spans()}
    producer, consumer = spans["publish kubevirt.v1.domain.*"], spans["process kubevirt.v1.domain.*"]
    assert header.startswith(f"00-{producer.context.trace_id:032x}-{producer.context.span_id:016x}-")
    assert producer.parent.span_id == parent.get_span_context().span_id
    assert (producer.kind, consumer.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == parent.get_span_context().trace_id
    assert producer.attributes["messaging.system"] == "nats"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert consumer.attributes["messaging.operation.type"] == "process"


async def test_a_request_is_a_client_span_answered_in_a_server_span(object_store, memory):
    bus = object_store.bus

    async def answer(msg):
        with tracing.child_span("virt-handler", "handle command"):
            await msg.respond(b"ok")

    sub = await bus.subscribe("kubevirt.v1.handler.node-a.command", cb=answer)
    with tracing.get_tracer("virt-api").start_as_current_span("PUT pause"):
        reply = await bus.request("kubevirt.v1.handler.node-a.command", b"pause", timeout=5)
    assert reply.data == b"ok"
    await sub.unsubscribe()
    spans = {s.name: s for s in memory.get_finished_spans()}
    client, server = spans["request kubevirt.v1.handler.*.command"], spans["process kubevirt.v1.handler.*.command"]
    assert (client.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert server.parent.span_id == client.context.span_id
    assert spans["handle command"].parent.span_id == server.context.span_id


async def test_messages_outside_any_span_carry_no_context(object_store, memory):
    got = asyncio.get_running_loop().create_future()

    async def on_message(msg):
        got.set_result(msg.headers)

    sub = await object_store.bus.subscribe("kubevirt.v1.console.s1.out", cb=on_message)
    await object_store.bus.publish("kubevirt.v1.console.s1.out", b"x")
    assert await asyncio.wait_for(got, 5) is None
    await sub.unsubscribe()
    assert memory.get_finished_spans() == ()


@pytest.mark.parametrize("subject, template", [
    pytest.param("kubevirt.handler.node-1.command", "kubevirt.handler.*.command", id="handler-command"),
    pytest.param("kubevirt.handler.node-1.console", "kubevirt.handler.*.console", id="console-open"),
    pytest.param("kubevirt.console.abc123.in", "kubevirt.console.*.in", id="console-session"),
    pytest.param("kubevirt.v1.domain.n.ns.vm", "kubevirt.v1.domain.*", id="domain-events"),
    pytest.param("kubevirt.v1.handler.node-1.command", "kubevirt.v1.handler.*.command", id="versioned-prefix"),
    pytest.param("_INBOX.x7Yz.1", "_INBOX.*", id="inbox"),
    pytest.param("kubevirt.events", "kubevirt.events", id="short"),
])
def test_span_names_use_subject_templates(subject, template):
    assert bus_module.compute_subject_template(subject) == template
