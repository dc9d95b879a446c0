"""The ``trace`` subresource: an object's recent operations as stored in the installation's trace store.

``GET /apis/subresources.kubevirt.io/v1/namespaces/<ns>/<plural>/<name>/trace`` (also ``v1alpha3``)
for ``virtualmachines``, ``virtualmachineinstances``, ``virtualmachineinstancemigrations``,
``virtualmachinesnapshots`` and ``virtualmachinerestores`` answers::

    {"apiVersion": "subresources.kubevirt.io/v1", "kind": "ObjectTrace",
     "metadata": {"name": <name>, "namespace": <ns>},
     "traceIds": ["<32 hex>", ...],          # the traces recorded on the object (see below)
     "documents": [<OTLP JSON>, ...]}         # every stored export batch of those traces, oldest first

``documents`` are the OTLP JSON ``ExportTraceServiceRequest`` documents of
:mod:`shared.trace_store`, as they are kept in JetStream; ``virtctl trace`` renders them and
``--export`` merges them. Which traces: the object's ``kubevirt-py.io/trace-id`` annotation; a
VM's adds its VMI's when that records another trace; a VMI recording none falls back to the VM
controlling it (same uid as its ownerReference). 404 ``NotFound`` Status (the object's own
message, e.g. ``virtualmachines.kubevirt.io "x" not found``) when the object does not exist;
``traceIds: []`` when it records no trace; ``documents: []`` when its spans aged out.

Why ``subresources.kubevirt.io`` and not a group of our own: a trace is a read-only view *of one
object*, as ``guestosinfo`` is, and the URL names that object, so authorization is the object's:
the request passes virt-api's authentication, and on Kubernetes RBAC grants it as ``get`` on
``<plural>/trace`` of the group whose APIService already routes to virt-api — no second APIService,
no second discovery document, no second place for rules. Served through
:mod:`services.virt_api.subresources` like every other subresource, so discovery lists
``<plural>/trace`` with verb ``get``; the OpenAPI document describes the path
(:mod:`services.virt_api.openapi_paths`). Reading the trace store needs a NATS connection, which
only virt-api has: a client needs nothing but a kubeconfig.
"""

from __future__ import annotations

from typing import Any

from services.virt_api.subresource_rules import VMIS, VMS
from services.virt_api.subresources import SUBRESOURCE_GROUP, SubresourceCall
from shared import trace_store, tracing
from shared.errors import NotFound, ServiceUnavailable

TRACE = "trace"
TRACE_KIND = "ObjectTrace"
#: Resources with a trace subresource (what ``virtctl trace`` accepts).
TRACED_PLURALS = (VMS, VMIS, "virtualmachineinstancemigrations", "virtualmachinesnapshots",
                  "virtualmachinerestores")


def compute_controlling_vm(vmi: dict[str, Any]) -> dict[str, Any] | None:
    """The VirtualMachine ownerReference with ``controller: true`` of ``vmi``, or None."""
    for ref in (vmi.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "VirtualMachine":
            return ref
    return None


def compute_trace_ids(objects: list[dict[str, Any]]) -> list[str]:
    """The distinct trace ids recorded on ``objects``, in their order (objects without one add nothing)."""
    return list(dict.fromkeys(t for t in (tracing.trace_id_of(o) for o in objects) if t))


def compute_trace_body(namespace: str, name: str, trace_ids: list[str],
                       documents: list[dict[str, Any]], version: str = "v1") -> dict[str, Any]:
    """The ``ObjectTrace`` answer (shape in the module docstring)."""
    return {"apiVersion": f"{SUBRESOURCE_GROUP}/{version}", "kind": TRACE_KIND,
            "metadata": {"name": name, "namespace": namespace}, "traceIds": trace_ids, "documents": documents}


async def _get_or_none(store: Any, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await store.get(plural, namespace, name)
    except NotFound:
        return None


async def read_traced_objects(store: Any, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """The object and the related objects whose traces belong to its view (module docstring).
    Raises NotFound (the store's Status message) when the object does not exist."""
    obj = await store.get(plural, namespace, name)
    objects = [obj]
    if plural == VMS:
        vmi = await _get_or_none(store, VMIS, namespace, name)
        if vmi is not None:
            objects.append(vmi)
    elif plural == VMIS and tracing.trace_id_of(obj) is None:
        # A VMI stamped by nothing (made by an older controller, or in a reconcile that had no
        # span) belongs to the latest operation on the VM that controls it.
        owner = compute_controlling_vm(obj)
        if owner is not None:
            vm = await _get_or_none(store, VMS, namespace, owner["name"])
            if vm is not None and vm["metadata"].get("uid") == owner.get("uid"):
                objects.append(vm)
    return objects


async def read_object_trace(store: Any, plural: str, namespace: str, name: str,
                            version: str = "v1") -> dict[str, Any]:
    """The ``ObjectTrace`` of ``<plural>/<name>`` in ``namespace``, read from ``store`` (an
    ObjectStore: its ``bus`` and bucket ``prefix`` name the trace stream). Raises NotFound,
    ServiceUnavailable when the store has no message bus."""
    bus = getattr(store, "bus", None)
    if bus is None:
        raise ServiceUnavailable("no message bus to reach the trace store")
    trace_ids = compute_trace_ids(await read_traced_objects(store, plural, namespace, name))
    documents: list[dict[str, Any]] = []
    for trace_id in trace_ids:
        documents += await trace_store.read_trace(bus, store.prefix, trace_id)
    return compute_trace_body(namespace, name, trace_ids, documents, version)


async def _handle(call: SubresourceCall) -> dict[str, Any]:
    if call.namespace is None:  # every traced resource is namespaced
        raise NotFound("the server could not find the requested resource")
    return await read_object_trace(call.store, call.plural, call.namespace, call.name, call.version)


def register(registry: Any) -> None:
    """Serve ``<plural>/<name>/trace`` (GET) for every plural of :data:`TRACED_PLURALS`."""
    for plural in TRACED_PLURALS:
        registry.add(plural, TRACE, "GET", _handle)
