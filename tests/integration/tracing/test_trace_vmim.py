"""``virtctl trace vmim/<name>``: a migration's own trace, read from the VMIM's trace-id
annotation and the JetStream trace store by virt-api's ``trace`` subresource, fetched the way
virtctl does with a kubeconfig (real nats-server)."""

from __future__ import annotations

import json

from shared import trace_store
from shared.tracing import TRACE_ID_ANNOTATION

from trace_cli import served_virt_api

from services.virtctl.trace_command import compute_spans, compute_waterfall, fetch_trace

MIGRATION_TRACE = "1" * 32
VM_TRACE = "2" * 32


def _document(trace_id: str, service: str, spans: list[tuple[str, str, str | None]]) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [
            {"traceId": trace_id, "spanId": span_id, **({"parentSpanId": parent} if parent else {}), "name": name,
             "startTimeUnixNano": str(1_000_000 * (i + 1)), "endTimeUnixNano": str(1_000_000 * (i + 2)),
             "status": {}} for i, (span_id, name, parent) in enumerate(spans)]}]}]}


async def test_vmim_target_shows_the_migration_trace_only(object_store):
    store, prefix = object_store, object_store.prefix
    await trace_store.apply_trace_stream(store.bus, prefix)
    js = store.bus.jetstream()
    for trace_id, service, spans in [
        (MIGRATION_TRACE, "virt-api", [("a" * 16, "POST virtualmachineinstancemigrations", None)]),
        (MIGRATION_TRACE, "virt-handler", [("b" * 16, "migrate VirtualMachineInstance (real source)", "a" * 16),
                                           ("c" * 16, "libvirt.migrateToURI3", "b" * 16)]),
        (VM_TRACE, "virt-api", [("d" * 16, "POST virtualmachines", None)]),
    ]:
        body = json.dumps(_document(trace_id, service, spans)).encode()
        await js.publish(trace_store.compute_subject(prefix, trace_id), body)
    vmi = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": "vm1", "namespace": "ns", "annotations": {TRACE_ID_ANNOTATION: VM_TRACE}}}
    await store.create("virtualmachineinstances", vmi, namespaced=True)
    vmim = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "mig1", "namespace": "ns", "annotations": {TRACE_ID_ANNOTATION: MIGRATION_TRACE}},
            "spec": {"vmiName": "vm1"}}
    await store.create("virtualmachineinstancemigrations", vmim, namespaced=True)

    async with served_virt_api(store, namespace="ns") as (_, _, kubeconfig):
        trace_ids, documents = await fetch_trace(kubeconfig, None, "virtualmachineinstancemigrations", "mig1")
    assert trace_ids == [MIGRATION_TRACE]
    rows = compute_waterfall(compute_spans(documents))
    assert [(r.depth, r.service, r.name) for r in rows] == [
        (0, "virt-api", "POST virtualmachineinstancemigrations"),
        (1, "virt-handler", "migrate VirtualMachineInstance (real source)"),
        (2, "virt-handler", "libvirt.migrateToURI3")]
