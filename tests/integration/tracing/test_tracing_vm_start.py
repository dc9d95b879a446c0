"""One user operation is one trace: creating a VM through virt-api yields spans from virt-api,
virt-controller, scheduler-bridge and virt-handler down to the libvirt calls, with the right
parents (in-memory exporter, real nats-server, libvirt's test driver)."""

from __future__ import annotations

import asyncio

import pytest
from loop_helpers import NS, VMIS, VMS, get_or_none, make_vm, printable_status, wait_until
from opentelemetry.trace import SpanKind, StatusCode

from shared import tracing

pytestmark = pytest.mark.timeout(120)
VMS_PATH = f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines"


def compute_tree_lines(spans, trace_id):
    """The spans of ``trace_id`` as an indented list ``<service> <name>``, children under their
    parent in order of first start; siblings with the same service and name (a reconcile per
    object version) are merged into one line holding all their children."""
    mine = [s for s in spans if s.context.trace_id == trace_id]
    by_parent = {}
    for span in sorted(mine, key=lambda s: s.start_time):
        by_parent.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    lines = []

    def visit(group, depth):
        merged = {}
        for span in group:
            label = f"{span.resource.attributes['service.name']} {span.name}"
            merged.setdefault(label, []).extend(by_parent.get(span.context.span_id, []))
        for label, children in merged.items():
            lines.append("  " * depth + label)
            visit(sorted(children, key=lambda s: s.start_time), depth + 1)

    visit(by_parent.get(None, []), 0)
    return lines


async def create_vm(api, vm):
    async with api.post(VMS_PATH, json=vm) as resp:
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        return resp.headers["X-Trace-Id"], resp.headers["traceresponse"], body


async def vm_status_is(store, name, value):
    vm = await get_or_none(store, VMS, name)
    return vm if printable_status(vm) == value else None


async def test_starting_a_vm_is_one_trace_down_to_the_libvirt_create(object_store, traced, api, controller,
                                                                     bridge, node):
    memory, _ = traced
    trace_id, traceresponse, created = await create_vm(api, make_vm("demo"))
    assert len(trace_id) == 32 and traceresponse.startswith(f"00-{trace_id}-")
    assert created["metadata"]["annotations"][tracing.TRACE_ID_ANNOTATION] == trace_id
    await wait_until(lambda: vm_status_is(object_store, "demo", "Running"))
    vmi = await get_or_none(object_store, VMIS, "demo")
    assert tracing.trace_id_of(vmi) == trace_id  # the VMI was created inside the VM's trace
    await asyncio.sleep(0.3)  # the handler's status write after the start ends its sync span

    spans = memory.get_finished_spans()
    assert compute_tree_lines(spans, int(trace_id, 16)) == [
        "virt-api POST /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines",
        "  virt-controller reconcile VirtualMachine",
        "    virt-controller reconcile VirtualMachineInstance",
        "    scheduler-bridge place VirtualMachineInstance",
        "    virt-handler sync VirtualMachineInstance",
        "      virt-handler convert VirtualMachineInstance to domain",
        "      virt-handler libvirt.defineXML",
        "      virt-handler libvirt.create",
    ]
    by_name = {s.name: s for s in spans if s.context.trace_id == int(trace_id, 16)}
    server = by_name["POST /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines"]
    assert server.kind == SpanKind.SERVER and server.parent is None
    assert server.attributes["http.response.status_code"] == 201
    assert by_name["place VirtualMachineInstance"].attributes["k8s.node.name"] == "node-small"
    create = by_name["libvirt.create"]
    assert create.kind == SpanKind.CLIENT and create.status.status_code == StatusCode.UNSET
    assert create.attributes["libvirt.uri"] == node.uri
    assert all(s.status.status_code != StatusCode.ERROR for s in by_name.values())


async def test_a_caller_traceparent_is_continued_by_virt_api(object_store, traced, api):
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with api.get(VMS_PATH, headers={"traceparent": caller}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Trace-Id"] == "0af7651916cd43dd8448eb211c80319c"
    memory, _ = traced
    (span,) = [s for s in memory.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert (span.parent.span_id, span.name) == (0xb7ad6b7169203331, "GET /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines")


async def test_without_tracing_nothing_is_recorded_or_annotated(object_store):
    assert not tracing.is_enabled()
    created = await object_store.create(VMS, make_vm("plain"))
    assert tracing.TRACE_ID_ANNOTATION not in (created["metadata"].get("annotations") or {})
    with tracing.object_span("virt-controller", "reconcile VirtualMachine", created) as span:
        assert not span.is_recording()
