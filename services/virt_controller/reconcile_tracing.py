"""virt-controller reconcile spans: each reconcile of a VM or VMI that carries a trace context
(annotation ``kubevirt-py.io/traceparent``, set by virt-api on the user's write) becomes a child
span of that write, so one user operation is one trace across services.

Owns only the wrapping of a controller's ``reconcile(key)``; no tracing work while
:mod:`shared.tracing` is off.

One span per object version (a resync of an unchanged object adds nothing to an old trace). For
a VM the version also holds its VMI's uid and whether that VMI is being deleted: a restart
deletes the VMI and the reconcile that then creates the new one sees an unchanged VM, but a
changed VMI state, so it is traced and the new VMI hangs under it (not under no span at all).
"""

from __future__ import annotations

from typing import Any

from shared.workers import Reconcile
from shared import tracing

SERVICE = "virt-controller"
#: controller attribute holding its primary objects' cache, and the kind named in the span
_PRIMARY = {"VMController": ("vms", "VirtualMachine"), "VMIController": ("vmis", "VirtualMachineInstance")}


def _span_view(obj: Any) -> dict[str, Any] | None:
    """The metadata a span reads (trace annotations, uid, resourceVersion, key) of a typed
    object, JSON-ready."""
    meta = obj.metadata if obj is not None else None
    if meta is None:
        return None
    return {"metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
                         "resourceVersion": meta.resource_version, "annotations": meta.annotations or {}}}


def compute_traced_reconcile(controller: Any) -> Reconcile:
    """``controller.reconcile`` wrapped in a ``reconcile <Kind>`` span (controllers of other
    kinds get their reconcile unchanged; while tracing is off the wrapper only checks that)."""
    primary = _PRIMARY.get(type(controller).__name__)
    if primary is None:
        return controller.reconcile
    cache = getattr(controller, primary[0])
    span_name = f"reconcile {primary[1]}"
    vmis = getattr(controller, "vmis", None) if primary[0] == "vms" else None

    def version(key: str, obj: Any) -> str | None:
        if vmis is None or obj is None:
            return None
        vmi = vmis.get(key)
        meta = vmi.metadata if vmi is not None else None
        state = f"{meta.uid}{'/deleting' if meta.deletion_timestamp else ''}" if meta is not None else "-"
        return f"{obj.metadata.resource_version if obj.metadata is not None else None} vmi={state}"

    async def reconcile(key: str) -> None:
        if not tracing.is_enabled():  # checked per call: tracing may be turned on after leading began
            await controller.reconcile(key)
            return
        obj = cache.get(key)
        await tracing.traced_reconcile(SERVICE, span_name, _span_view(obj), lambda: controller.reconcile(key),
                                       version=version(key, obj))
    return reconcile
