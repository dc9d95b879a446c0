"""Traces from anywhere: virt-api serves the trace store as the ``trace`` subresource of every kind
``virtctl trace`` knows, behind the same bearer token as the rest of the API; ``virtctl trace``
and ``virtctl events`` run from a directory with no installation state and only ``KUBECONFIG``
set show a VM's last operation across the services and its Events.

Real nats-server (the JetStream trace store of the test's buckets), virt-api over HTTP from this
process, and for the last test the in-process control loop (virt-controller, scheduler-bridge, a
virt-handler on libvirt's test driver) with virtctl run as a separate process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from loop_helpers import NS, make_vm, wait_until
from test_tracing_vm_start import create_vm, vm_status_is
from trace_cli import flush_spans, served_virt_api

from services.virt_api.openapi import openapi_v2
from shared import trace_store
from shared.tracing import TRACE_ID_ANNOTATION

pytestmark = pytest.mark.timeout(120)
PROJECT_ROOT = Path(__file__).resolve().parents[3]
SUB = "/apis/subresources.kubevirt.io/v1"

#: (virtctl kind, plural, apiVersion, kind) of every traced resource
TRACED = [
    ("vm", "virtualmachines", "kubevirt.io/v1", "VirtualMachine"),
    ("vmi", "virtualmachineinstances", "kubevirt.io/v1", "VirtualMachineInstance"),
    ("vmim", "virtualmachineinstancemigrations", "kubevirt.io/v1", "VirtualMachineInstanceMigration"),
    ("vmsnapshot", "virtualmachinesnapshots", "snapshot.kubevirt.io/v1beta1", "VirtualMachineSnapshot"),
    ("vmrestore", "virtualmachinerestores", "snapshot.kubevirt.io/v1beta1", "VirtualMachineRestore"),
]


def otlp_document(trace_id: str, service: str, span_id: str, name: str) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": span_id, "name": name,
                                   "startTimeUnixNano": "1000000", "endTimeUnixNano": "3000000",
                                   "status": {}}]}]}]}


async def store_traced_object(store, plural: str, api_version: str, kind: str, trace_id: str) -> dict:
    """An object named ``traced`` recording ``trace_id``, and one stored span document of that trace."""
    await trace_store.apply_trace_stream(store.bus, store.prefix)
    document = otlp_document(trace_id, "virt-api", "ab" * 8, f"POST {plural}")
    await store.bus.jetstream().publish(trace_store.compute_subject(store.prefix, trace_id),
                                        json.dumps(document).encode())
    await store.create(plural, {"apiVersion": api_version, "kind": kind,
                                "metadata": {"name": "traced", "namespace": NS,
                                             "annotations": {TRACE_ID_ANNOTATION: trace_id}}})
    return document


async def test_every_traced_kind_serves_its_trace_and_is_discoverable(object_store):
    documents = {}
    for number, (_, plural, api_version, kind) in enumerate(TRACED):
        trace_id = f"{number + 1:032x}"
        documents[plural] = (trace_id, await store_traced_object(object_store, plural, api_version, kind, trace_id))
    async with served_virt_api(object_store) as (server, token, _):
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=str(server.make_url("")), headers=headers) as http:
            for _, plural, _, _ in TRACED:
                async with http.get(f"{SUB}/namespaces/{NS}/{plural}/traced/trace") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                # a VM's view adds its VMI's trace (same name) when the VMI records another one
                shown = [documents[p] for p in ([plural, "virtualmachineinstances"] if plural == "virtualmachines"
                                                else [plural])]
                assert body == {"apiVersion": "subresources.kubevirt.io/v1", "kind": "ObjectTrace",
                                "metadata": {"name": "traced", "namespace": NS},
                                "traceIds": [t for t, _ in shown], "documents": [d for _, d in shown]}, plural
            async with http.get(SUB) as resp:
                resources = {r["name"]: r for r in (await resp.json())["resources"]}
    for _, plural, _, _ in TRACED:
        assert resources[f"{plural}/trace"]["verbs"] == ["get"]
        assert resources[f"{plural}/trace"]["namespaced"] is True
        path = openapi_v2()["paths"][f"{SUB}/namespaces/{{namespace}}/{plural}/{{name}}/trace"]
        assert path["get"]["responses"]["200"]["schema"] == {
            "$ref": "#/definitions/io.kubevirt.subresources.v1.ObjectTrace"}


async def test_a_trace_needs_the_token(object_store):
    await store_traced_object(object_store, "virtualmachines", "kubevirt.io/v1", "VirtualMachine", "c" * 32)
    async with served_virt_api(object_store) as (server, _, _):
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with http.get(f"{SUB}/namespaces/{NS}/virtualmachines/traced/trace", headers=headers) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["reason"] == "Unauthorized"


@pytest.mark.parametrize(("plural", "qualified"), [("virtualmachines", "virtualmachines.kubevirt.io"),
                                                   ("virtualmachinesnapshots",
                                                    "virtualmachinesnapshots.snapshot.kubevirt.io")])
async def test_the_trace_of_a_missing_object_is_a_404_status(object_store, plural, qualified):
    async with served_virt_api(object_store) as (server, token, _):
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=str(server.make_url("")), headers=headers) as http:
            async with http.get(f"{SUB}/namespaces/{NS}/{plural}/nope/trace") as resp:
                status = await resp.json()
                assert resp.status == 404
    assert status["kind"] == "Status" and status["reason"] == "NotFound" and status["code"] == 404
    assert status["message"] == f'{qualified} "nope" not found'


async def run_virtctl(cwd: Path, kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """``virtctl ARGS`` as a separate process in ``cwd`` whose environment names nothing but the
    kubeconfig (plus what starts Python)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PROJECT_ROOT),
           "HOME": str(cwd), "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.virtctl.main", *args, cwd=cwd,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def vm_has_events(store, name):
    items, _ = await store.list("events", NS)
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name] or None


async def test_virtctl_with_only_a_kubeconfig_shows_the_vms_last_operation_and_events(
        object_store, traced, api, controller, bridge, node, tmp_path):
    trace_id, _, _ = await create_vm(api, make_vm("anywhere"))
    await wait_until(lambda: vm_status_is(object_store, "anywhere", "Running"))
    await wait_until(lambda: vm_has_events(object_store, "anywhere"))
    await asyncio.sleep(0.3)  # the handler's status write after the start ends its sync span
    await flush_spans()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    async with served_virt_api(object_store) as (_, _, kubeconfig):
        code, out, err = await run_virtctl(empty, kubeconfig, "trace", "vm/anywhere")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"trace {trace_id}"
        assert lines[1].split() == ["START", "DURATION", "SERVICE", "SPAN", "STATUS"]
        assert lines[2].split()[3:6] == ["virt-api", "POST", "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines"]
        for service, span in [("virt-controller", "reconcile VirtualMachine"),
                              ("scheduler-bridge", "place VirtualMachineInstance"),
                              ("virt-handler", "sync VirtualMachineInstance"),
                              ("virt-handler", "libvirt.create")]:
            assert any(service in line and f" {span} " in f"{line} " for line in lines[2:]), (span, out)

        code, out, err = await run_virtctl(empty, kubeconfig, "events", "anywhere")
        assert code == 0, err
        assert out.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert any("virtualmachine/anywhere" in line for line in out.splitlines()[1:]), out

        code, out, err = await run_virtctl(empty, kubeconfig, "trace", "vm/missing")
        assert (code, out) == (1, "")
        assert err == 'virtctl: error: virtualmachines.kubevirt.io "missing" not found\n'
    assert list(empty.iterdir()) == []  # no state directory was looked for or made
