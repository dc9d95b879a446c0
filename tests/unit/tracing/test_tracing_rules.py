"""Pure rules of tracing: route names, trace annotations, setup from OTEL_* variables, OTLP JSON
encoding and the virtctl waterfall."""

from __future__ import annotations

import click
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.virt_api.request_tracing import compute_route
from services.virtctl import trace_command
from shared import trace_store, tracing


@pytest.fixture
def memory():
    exporter = tracing.use_in_memory_exporter()
    yield exporter
    tracing.reset()


@pytest.mark.parametrize("path, route", [
    pytest.param("/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
                 "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines", id="list"),
    pytest.param("/apis/kubevirt.io/v1/namespaces/ns1/virtualmachines/vm1",
                 "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}", id="object"),
    pytest.param("/apis/subresources.kubevirt.io/v1/namespaces/ns1/virtualmachines/vm1/start",
                 "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/start",
                 id="subresource"),
    pytest.param("/api/v1/namespaces/default/events", "/api/v1/namespaces/{namespace}/events", id="core"),
    pytest.param("/apis/kubevirt.io/v1/virtualmachines", "/apis/kubevirt.io/v1/virtualmachines", id="all-ns"),
    pytest.param("/healthz", "/healthz", id="non-api"),
])
def test_routes_have_no_object_names(path, route):
    assert compute_route(path) == route


def test_annotations_record_the_current_span(memory):
    obj = {"metadata": {"name": "vm1", "annotations": {"keep": "me"}}}
    with tracing.get_tracer("virt-api").start_as_current_span("op") as span:
        tracing.apply_trace_annotations(obj)
    ctx = span.get_span_context()
    annotations = obj["metadata"]["annotations"]
    assert annotations["keep"] == "me"
    assert annotations[tracing.TRACE_ID_ANNOTATION] == f"{ctx.trace_id:032x}"
    assert annotations[tracing.TRACEPARENT_ANNOTATION].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    with tracing.object_span("virt-controller", "reconcile VirtualMachine", {**obj, "metadata": {
            **obj["metadata"], "uid": "u1", "resourceVersion": "7"}}) as child:
        assert child.is_recording()
    with tracing.object_span("virt-controller", "reconcile VirtualMachine", {**obj, "metadata": {
            **obj["metadata"], "uid": "u1", "resourceVersion": "7"}}) as again:
        assert not again.is_recording()  # same object version: traced once
    (_, finished) = memory.get_finished_spans()
    assert finished.parent.span_id == ctx.span_id and finished.attributes["kubevirt.object"] == "/vm1"


def test_failures_carry_reason_and_message(memory):
    with tracing.get_tracer("virt-handler").start_as_current_span("sync") as span:
        tracing.mark_failed("ErrImagePull", "image x not found")
    (finished,) = memory.get_finished_spans()
    assert finished.status.status_code == StatusCode.ERROR
    assert finished.status.description == "ErrImagePull: image x not found"
    assert finished.attributes["error.type"] == "ErrImagePull"
    assert span is not None


@pytest.mark.parametrize("env, enabled", [
    pytest.param({"OTEL_SDK_DISABLED": "true"}, False, id="sdk-disabled"),
    pytest.param({}, True, id="default-on"),
    pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True, id="otlp-endpoint"),
])
def test_setup_honours_otel_variables(env, enabled):
    try:
        assert tracing.setup("virt-handler", node_name="node-1", env=env) is enabled
        assert tracing.is_enabled() is enabled
        if enabled:
            kinds = [type(getattr(p, "span_exporter", None)).__name__ for p in tracing._state.fanout.processors]
            assert kinds == (["OTLPSpanExporter"] if "OTEL_EXPORTER_OTLP_ENDPOINT" in env else [])
            resource = tracing._provider("virt-handler").resource.attributes
            assert (resource["service.name"], resource["k8s.node.name"]) == ("virt-handler", "node-1")
            assert resource["service.instance.id"] and resource["service.version"]
    finally:
        tracing.reset()


def test_nothing_is_injected_while_tracing_is_off():
    assert tracing.inject_headers(None) is None
    assert tracing.get_tracer("virt-api") is tracing._NOOP_TRACER
    assert tracing.context_of({"metadata": {"annotations": {
        tracing.TRACEPARENT_ANNOTATION: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}) is not None


def test_otlp_json_round_trips_through_protobuf(memory):
    tracer = tracing.get_tracer("virt-controller")
    with tracer.start_as_current_span("parent"):
        with tracer.start_as_current_span("child"):
            pass
    spans = memory.get_finished_spans()
    document = trace_store.compute_otlp_json(spans)
    (resource_spans,) = document["resourceSpans"]
    child, parent = resource_spans["scopeSpans"][0]["spans"]
    assert child["parentSpanId"] == parent["spanId"] == f"{spans[1].context.span_id:016x}"
    assert child["traceId"] == f"{spans[0].context.trace_id:032x}"
    assert child["startTimeUnixNano"] == str(spans[0].start_time)
    request = trace_store.parse_otlp_json(document)
    assert [s.name for s in request.resource_spans[0].scope_spans[0].spans] == ["child", "parent"]


def _span(span_id, name, start, end, parent=None, service="svc", code=0, message=""):
    span = {"traceId": "ab" * 16, "spanId": span_id, "name": name, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end), "status": {"code": code, **({"message": message} if message else {})}}
    if parent:
        span["parentSpanId"] = parent
    return {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"scope": {"name": "kubevirt-py"}, "spans": [span]}]}


def test_waterfall_orders_children_under_parents_and_shows_errors():
    documents = [{"resourceSpans": [
        _span("02", "sync", 3_000_000, 5_000_000, parent="01", service="virt-handler", code=2,
              message="ErrImagePull: missing"),
        _span("01", "POST vms", 1_000_000, 9_000_000, service="virt-api"),
        _span("03", "place", 2_000_000, 2_500_000, parent="01", service="scheduler-bridge"),
    ]}, {"resourceSpans": [_span("03", "place", 2_000_000, 2_500_000, parent="01", service="scheduler-bridge")]}]
    rows = trace_command.compute_waterfall(trace_command.compute_spans(documents))
    assert [(r.depth, r.name, r.offset_ms, r.duration_ms, r.status) for r in rows] == [
        (0, "POST vms", 0.0, 8.0, "UNSET"), (1, "place", 1.0, 0.5, "UNSET"), (1, "sync", 2.0, 2.0, "ERROR")]
    text = trace_command.format_waterfall(rows).splitlines()
    assert text[0].split() == ["START", "DURATION", "SERVICE", "SPAN", "STATUS"]
    assert text[3].endswith("ERROR  ErrImagePull: missing") and "virt-handler" in text[3]
    # the headings sit over their columns
    service_at, span_at, status_at = (text[0].index(h) for h in ("SERVICE", "SPAN", "STATUS"))
    assert [(line[service_at:span_at].rstrip(), line[span_at:status_at].rstrip(), line[status_at:status_at + 5])
            for line in text[1:]] == [("virt-api", "POST vms", "UNSET"), ("scheduler-bridge", "  place", "UNSET"),
                                      ("virt-handler", "  sync", "ERROR")]
    assert [line[:text[0].index("DURATION") + len("DURATION")].split() for line in text[1:]] == [
        ["0.0ms", "8.0ms"], ["1.0ms", "0.5ms"], ["2.0ms", "2.0ms"]]


@pytest.mark.parametrize("target, expected", [
    pytest.param("vm/demo", ("virtualmachines", "demo"), id="vm"),
    pytest.param("VMI/demo", ("virtualmachineinstances", "demo"), id="vmi-upper"),
    pytest.param("virtualmachine/x", ("virtualmachines", "x"), id="long"),
    pytest.param("vmim/kubevirt-migrate-vm-7xk2p", ("virtualmachineinstancemigrations", "kubevirt-migrate-vm-7xk2p"),
                 id="vmim"),
    pytest.param("virtualmachineinstancemigration/m", ("virtualmachineinstancemigrations", "m"), id="vmim-long"),
    pytest.param("vmsnapshot/snap-a", ("virtualmachinesnapshots", "snap-a"), id="vmsnapshot"),
    pytest.param("VirtualMachineRestore/r", ("virtualmachinerestores", "r"), id="vmrestore-long"),
])
def test_targets(target, expected):
    assert trace_command.parse_target(target) == expected


@pytest.mark.parametrize("target", ["demo", "pod/demo", "vm/"])
def test_bad_targets_are_one_readable_error(target):
    with pytest.raises(click.BadParameter, match="expected <kind>/<name>"):
        trace_command.parse_target(target)


def test_in_memory_hook_is_an_in_memory_exporter(memory):
    assert isinstance(memory, InMemorySpanExporter)
