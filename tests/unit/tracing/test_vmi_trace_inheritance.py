"""The VMI a VM creates carries the VM's trace annotations (so placement and sync join the VM's
latest operation even when no reconcile span stamped it), and template copies never win."""

from __future__ import annotations

import msgspec

from services.virt_controller.vmi_template import compute_vmi_for_vm
from shared import tracing
from shared.api.vm import VirtualMachine

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_vm(annotations=None, template_annotations=None):
    return msgspec.convert(make_vm_dict(annotations, template_annotations), VirtualMachine)


def make_vm_dict(annotations=None, template_annotations=None):
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "generation": 3,
                         **({"annotations": annotations} if annotations is not None else {})},
            "spec": {"template": {"metadata": {"annotations": template_annotations or {}},
                                  "spec": {"domain": {"devices": {}}}}}}


def test_the_vmi_inherits_the_vms_trace_annotations():
    vm = make_vm({tracing.TRACE_ID_ANNOTATION: TRACEPARENT[3:35], tracing.TRACEPARENT_ANNOTATION: TRACEPARENT,
                  "other": "x"})
    vmi = compute_vmi_for_vm(vm, start_paused=False, now="2026-01-01T00:00:00.000000Z")
    assert vmi["metadata"]["annotations"] == {"kubevirt.io/vm-generation": "3",
                                              tracing.TRACE_ID_ANNOTATION: "0af7651916cd43dd8448eb211c80319c",
                                              tracing.TRACEPARENT_ANNOTATION: TRACEPARENT}


def test_trace_annotations_in_the_template_are_not_copied():
    vm = make_vm(None, {tracing.TRACEPARENT_ANNOTATION: TRACEPARENT, "keep": "me"})
    vmi = compute_vmi_for_vm(vm, start_paused=False, now="2026-01-01T00:00:00.000000Z")
    assert vmi["metadata"]["annotations"] == {"keep": "me", "kubevirt.io/vm-generation": "3"}
