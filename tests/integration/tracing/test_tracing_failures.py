"""A VM that cannot start shows the failing span, its error status and the reason in
``virtctl trace vm/<name>``; ``--export`` writes OTLP JSON. Spans travel through the real
JetStream trace store of the test's buckets; virtctl reads them through virt-api's ``trace``
subresource with a kubeconfig."""

from __future__ import annotations

import json
import re

import pytest
from loop_helpers import NS, VMS, InProcessNode, get_or_none, make_vm, printable_status, wait_until
from trace_cli import virtctl_trace  # noqa: F401 - other test modules import it from here

from services.virt_handler.hypervisor import Hypervisor
from shared import trace_store, tracing

pytestmark = pytest.mark.timeout(120)
VMS_PATH = f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines"
HEX32, HEX16 = re.compile(r"^[0-9a-f]{32}$"), re.compile(r"^[0-9a-f]{16}$")


class BrokenOsTypeHypervisor(Hypervisor):
    """libvirt's test driver fed a domain whose OS type it does not support: a real libvirt
    error from ``defineXML`` (the fault is injected into the XML, libvirt does the failing)."""

    async def define_and_start(self, xml, *, paused=False):
        assert ">hvm</type>" in xml
        return await super().define_and_start(xml.replace(">hvm</type>", ">bogus</type>"), paused=paused)


def vm_with_missing_image(name):
    vm = make_vm(name)
    spec = vm["spec"]["template"]["spec"]
    spec["domain"]["devices"]["disks"] = [{"name": "root", "disk": {"bus": "virtio"}}]
    spec["volumes"] = [{"name": "root", "containerDisk": {"image": "example.org/not-imported:latest"}}]
    return vm


async def create_vm(api, vm):
    async with api.post(VMS_PATH, json=vm) as resp:
        assert resp.status == 201, await resp.text()
        return resp.headers["X-Trace-Id"]


async def status_is(store, name, wanted):
    return printable_status(await get_or_none(store, VMS, name)) in wanted


def lines_with(output, span_name):
    return [line for line in output.splitlines() if f" {span_name} " in f"{line} "]


async def test_an_unschedulable_vm_shows_the_failed_placement(nats_server, object_store, api, controller, bridge,
                                                              node):
    trace_id = await create_vm(api, make_vm("big", memory="8Gi"))
    await wait_until(lambda: status_is(object_store, "big", {"ErrorUnschedulable"}))
    result = await virtctl_trace(object_store, "vm/big")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"trace {trace_id}"
    placements = lines_with(result.output, "place VirtualMachineInstance")
    assert placements and all("scheduler-bridge" in line for line in placements)
    assert any("ERROR  Unschedulable: 0/1 nodes are available: 1 Insufficient memory." in line for line in placements)
    assert not lines_with(result.output, "sync VirtualMachineInstance")  # it never reached a handler


async def test_a_missing_image_shows_the_failed_conversion_and_sync(nats_server, object_store, api, controller,
                                                                   bridge, node):
    await create_vm(api, vm_with_missing_image("noimage"))
    await wait_until(lambda: status_is(object_store, "noimage", {"ErrImagePull", "ImagePullBackOff"}))
    result = await virtctl_trace(object_store, "vm/noimage")
    assert result.exit_code == 0, result.output
    (sync, *_) = lines_with(result.output, "sync VirtualMachineInstance")
    assert "virt-handler" in sync and "ERROR  ErrImagePull: " in sync and "not-imported" in sync
    (convert, *_) = lines_with(result.output, "convert VirtualMachineInstance to domain")
    assert "ERROR" in convert and "not-imported" in convert
    assert not lines_with(result.output, "libvirt.defineXML")  # nothing reached libvirt


async def test_a_libvirt_error_shows_on_the_libvirt_call_and_exports_as_otlp_json(
        nats_server, object_store, api, controller, bridge, traced, tmp_path):
    broken = InProcessNode(object_store, "node-broken", tmp_path)
    hypervisor = BrokenOsTypeHypervisor(broken.uri)
    await hypervisor.open()
    await broken.start(hypervisor=hypervisor)
    try:
        trace_id = await create_vm(api, make_vm("crash"))
        await wait_until(lambda: _sync_failed(object_store, "crash"))
        export = tmp_path / "trace.json"
        result = await virtctl_trace(object_store, "vm/crash", "--export", str(export))
    finally:
        await broken.close()
    print(result.output)  # the waterfall, shown when the test fails
    assert result.exit_code == 0, result.output
    (define, *_) = lines_with(result.output, "libvirt.defineXML")
    assert "virt-handler" in define and "ERROR" in define and "bogus" in define
    (sync, *_) = lines_with(result.output, "sync VirtualMachineInstance")
    assert "ERROR" in sync

    document = json.loads(export.read_text())
    assert_otlp_json(document, trace_id)
    request = trace_store.parse_otlp_json(document)  # protobuf's JSON mapping accepts it
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.name for s in spans} >= {"libvirt.defineXML", "sync VirtualMachineInstance",
                                       "POST /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines"}
    assert {s.trace_id.hex() for s in spans} == {trace_id}


async def _sync_failed(store, name):
    from loop_helpers import VMIS, conditions_of
    vmi = await get_or_none(store, VMIS, name)
    return (conditions_of(vmi).get("Synchronized") or {}).get("status") == "False"


def assert_otlp_json(document, trace_id):
    """The OTLP JSON mapping (opentelemetry-proto docs/specification.md, JSON Protobuf Encoding):
    lowerCamelCase keys, hex ids, 64-bit times as decimal strings, enums as integers."""
    assert set(document) == {"resourceSpans"} and document["resourceSpans"]
    services = set()
    for resource_spans in document["resourceSpans"]:
        attributes = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
        services.add(attributes["service.name"]["stringValue"])
        assert "stringValue" in attributes["service.instance.id"]
        for scope_spans in resource_spans["scopeSpans"]:
            assert scope_spans["scope"]["name"] == tracing.SCOPE
            for span in scope_spans["spans"]:
                assert span["traceId"] == trace_id and HEX16.match(span["spanId"])
                assert "parentSpanId" not in span or HEX16.match(span["parentSpanId"])
                assert span["startTimeUnixNano"].isdigit() and span["endTimeUnixNano"].isdigit()
                assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
                assert isinstance(span["kind"], int) and 1 <= span["kind"] <= 5
                assert isinstance(span.get("status", {}).get("code", 0), int)
    assert HEX32.match(trace_id)
    assert services == {"virt-api", "virt-controller", "scheduler-bridge", "virt-handler"}
