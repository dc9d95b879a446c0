"""Operations driven through VM subresources are traceable: a restart (a ``/status`` write of
``stateChangeRequests``, which never changes metadata) still stamps the VM with the restart's
trace, the controller's reconciles hang under the virt-api restart span, and
``virtctl trace vmi/<name>`` shows the trace that created the VMI (real nats-server, in-memory
and JetStream exporters, every service in this process)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from loop_helpers import NS, VMIS, VMS, get_or_none, make_vm, phase_of, wait_until
from test_tracing_failures import virtctl_trace
from test_tracing_vm_start import compute_tree_lines, create_vm, vm_status_is

from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from shared import tracing

pytestmark = pytest.mark.timeout(120)
SUBRESOURCES = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachines"
RESTART_SPAN = "PUT /apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/restart"


@pytest.fixture
async def api(object_store, traced):
    """virt-api served from this process with the subresource modules virt-api's main loads."""
    registry = SubresourceRegistry()
    assert "services.virt_api.lifecycle" in apply_subresource_modules(registry)
    server = TestServer(create_app(object_store, token=None, subresources=registry))
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
        yield session
    await server.close()


async def new_vmi_running(store, name, old_uid):
    vmi = await get_or_none(store, VMIS, name)
    if vmi is not None and vmi["metadata"]["uid"] != old_uid and phase_of(vmi) == "Running":
        return vmi
    return None


async def test_a_restart_stamps_the_vm_and_its_reconciles_join_the_restart_trace(nats_server, object_store, traced,
                                                                                api, controller, bridge, node):
    memory, _ = traced
    start_trace, _, _ = await create_vm(api, make_vm("rs", grace=0))
    await wait_until(lambda: vm_status_is(object_store, "rs", "Running"))
    old_vmi = await get_or_none(object_store, VMIS, "rs")
    before = await get_or_none(object_store, VMS, "rs")

    async with api.put(f"{SUBRESOURCES}/rs/restart", json={}) as resp:
        assert resp.status == 202, await resp.text()
        restart_trace = resp.headers["X-Trace-Id"]
    assert restart_trace != start_trace
    vm = await get_or_none(object_store, VMS, "rs")
    annotations = vm["metadata"]["annotations"]
    assert annotations[tracing.TRACE_ID_ANNOTATION] == restart_trace
    assert annotations[tracing.TRACEPARENT_ANNOTATION].startswith(f"00-{restart_trace}-")
    assert vm["metadata"]["generation"] == before["metadata"]["generation"]  # metadata only: spec unchanged

    new_vmi = await wait_until(lambda: new_vmi_running(object_store, "rs", old_vmi["metadata"]["uid"]))
    assert tracing.trace_id_of(new_vmi) == restart_trace  # created inside the restart's trace
    await asyncio.sleep(0.3)  # the handler's status write after the start ends its sync span

    spans = memory.get_finished_spans()
    lines = compute_tree_lines(spans, int(restart_trace, 16))
    assert lines[:2] == ["virt-api " + RESTART_SPAN, "  virt-controller reconcile VirtualMachine"]
    assert "    virt-controller reconcile VirtualMachineInstance" in lines
    assert "    scheduler-bridge place VirtualMachineInstance" in lines
    assert "      virt-handler libvirt.create" in lines
    # nothing of the restart lands in the start's trace any more
    assert "virt-api " + RESTART_SPAN not in compute_tree_lines(spans, int(start_trace, 16))

    for target in ("vm/rs", "vmi/rs"):  # the tester's two findings, through virtctl
        result = await virtctl_trace(object_store, target)
        assert result.exit_code == 0, result.output
        output = result.output.splitlines()
        assert output[0] == f"trace {restart_trace}", result.output
        assert output[2].split()[3:6] == ["virt-api", "PUT", RESTART_SPAN.split()[1]], result.output


async def test_virtctl_trace_vmi_prints_the_waterfall_of_the_operation_that_created_it(
        nats_server, object_store, traced, api, controller, bridge, node):
    trace_id, _, _ = await create_vm(api, make_vm("wf"))
    await wait_until(lambda: vm_status_is(object_store, "wf", "Running"))
    await asyncio.sleep(0.3)
    result = await virtctl_trace(object_store, "vmi/wf")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"trace {trace_id}"
    assert lines[1].split() == ["START", "DURATION", "SERVICE", "SPAN", "STATUS"]
    body = "\n".join(lines[2:])
    for service, span in [("virt-api", "POST /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines"),
                          ("virt-controller", "reconcile VirtualMachine"),
                          ("scheduler-bridge", "place VirtualMachineInstance"),
                          ("virt-handler", "sync VirtualMachineInstance"),
                          ("virt-handler", "libvirt.create")]:
        assert any(service in line and f" {span} " in f"{line} " for line in lines[2:]), (span, body)


async def test_virtctl_trace_vmi_without_a_trace_of_its_own_shows_its_vms(nats_server, object_store, traced, api):
    """A VMI that records no trace (made by a controller before VMIs inherited the VM's trace)
    shows the latest operation on the VM that controls it."""
    trace_id, _, vm = await create_vm(api, make_vm("legacy"))
    vmi = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": "legacy", "namespace": NS,
                        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "legacy",
                                             "uid": vm["metadata"]["uid"], "controller": True}]},
           "spec": {"domain": {"devices": {}}}}
    created = await object_store.create(VMIS, vmi)  # written outside any span: no annotations
    assert tracing.trace_id_of(created) is None
    result = await virtctl_trace(object_store, "vmi/legacy")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"trace {trace_id}"
    assert lines[2].split()[3:5] == ["virt-api", "POST"]


async def test_a_pause_stamps_the_vmi_with_the_pause_trace(object_store, traced, api, controller, bridge, node):
    await create_vm(api, make_vm("pz"))
    await wait_until(lambda: vm_status_is(object_store, "pz", "Running"))
    before = await get_or_none(object_store, VMIS, "pz")
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/pz/pause"
    async with api.put(path, json={}) as resp:
        assert resp.status == 202, await resp.text()
        pause_trace = resp.headers["X-Trace-Id"]
    vmi = await get_or_none(object_store, VMIS, "pz")
    assert tracing.trace_id_of(vmi) == pause_trace
    assert vmi["metadata"]["generation"] == before["metadata"]["generation"]
    await wait_until(lambda: vm_status_is(object_store, "pz", "Paused"))
    lines = compute_tree_lines(traced[0].get_finished_spans(), int(pause_trace, 16))
    assert lines[0] == "virt-api PUT /apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/pause"
    # the metadata stamp makes the VMI's reconcile and sync children of the pause; the command
    # travels to virt-handler as a NATS request carrying the traceparent
    assert sorted(lines[1:]) == ["    kubevirt-store process kubevirt.v1.handler.*.command",
                                 "  kubevirt-store request kubevirt.v1.handler.*.command",
                                 "  virt-controller reconcile VirtualMachineInstance",
                                 "  virt-handler sync VirtualMachineInstance"]
