"""virt-controller reconcile spans: each reconcile of a VM or VMI that carries a trace context
(annotation ``kubevirt-py.io/traceparent``, set by virt-api on the user's write) becomes a child
span of that write, so one user operation is one trace across services.

Owns only the wrapping of a controller's ``reconcile(key)``; no tracing work while
:mod:`shared.tracing` is off.
"""

from __future__ import annotations

from typing import Any

from shared import tracing
from shared.errors import Conflict
from services.virt_controller.sync_error import SyncError
from services.virt_controller.worker import Reconcile

SERVICE = "virt-controller"
#: controller attribute holding its primary objects' cache, and the kind named in the span
_PRIMARY = {"VMController": ("vms", "VirtualMachine"), "VMIController": ("vmis", "VirtualMachineInstance")}


def compute_traced_reconcile(controller: Any) -> Reconcile:
    """``controller.reconcile`` wrapped in a ``reconcile <Kind>`` span (controllers of other
    kinds get their reconcile unchanged; while tracing is off the wrapper only checks that)."""
    primary = _PRIMARY.get(type(controller).__name__)
    if primary is None:
        return controller.reconcile
    cache = getattr(controller, primary[0])
    span_name = f"reconcile {primary[1]}"

    async def reconcile(key: str) -> None:
        if not tracing.is_enabled():  # checked per call: tracing may be turned on after leading began
            await controller.reconcile(key)
            return
        with tracing.object_span(SERVICE, span_name, cache.get(key), mark_exceptions=False) as span:
            try:
                await controller.reconcile(key)
            except SyncError as err:
                tracing.mark_failed(err.reason or "SyncFailed", err.message, span)
                raise
            except Conflict:
                span.set_attribute("kubevirt.requeued", "Conflict")  # a normal race: retried, not a failure
                raise
            except Exception as err:
                tracing.mark_failed(type(err).__name__, str(err), span)
                raise
    return reconcile
