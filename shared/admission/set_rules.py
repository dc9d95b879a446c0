"""Admission of VirtualMachineInstanceReplicaSets and VirtualMachinePools: replicas,
a selector that matches the template's labels, and the VMI (or VM) rules on the template
with prefixed paths (KubeVirt replicaset-admitter.go, pool admitter)."""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import at, invalid_value, not_supported, required
from shared.admission.labelselector import OPERATORS, is_selector_empty, is_selector_matching
from shared.admission.vm_rules import compute_vm_spec_causes
from shared.admission.vmi_rules import compute_defaulted_spec_causes
from shared.errors import StatusCause


def check_replicas_and_selector(spec: dict[str, Any], template_labels: dict[str, str] | None) -> list[StatusCause]:
    """``replicas`` >= 0; a non-empty selector with known operators that selects the
    template's labels."""
    causes: list[StatusCause] = []
    if spec.get("replicas") is not None and spec["replicas"] < 0:
        causes.append(invalid_value("spec.replicas", "spec.replicas must be greater than or equal to 0"))
    selector = spec.get("selector") or {}
    if is_selector_empty(selector):
        return causes + [
            required("spec.selector", "a non-empty selector is required (matchLabels or matchExpressions)")
        ]
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        if expression.get("operator") not in OPERATORS:
            causes.append(not_supported(at("spec.selector.matchExpressions", i, "operator"),
                                        f"{expression.get('operator')!r} is not a valid label selector operator"))
    if not causes and not is_selector_matching(selector, template_labels or {}):
        causes.append(invalid_value("spec.selector", "selector does not match labels."))
    return causes


def admit_replica_set(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Validate a VMIRS: replicas, selector vs ``spec.template.metadata.labels`` and the VMI
    rules on ``spec.template.spec``."""
    spec = obj["spec"]
    template = spec.get("template") or {}
    causes = check_replicas_and_selector(spec, (template.get("metadata") or {}).get("labels"))
    if template.get("spec") is None:
        return causes + [required("spec.template.spec", "missing virtual machine instance template.")]
    _, template_causes = compute_defaulted_spec_causes(template["spec"], "spec.template.spec", ctx.cluster)
    return causes + template_causes


def admit_pool(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Validate a VirtualMachinePool: replicas, selector vs
    ``spec.virtualMachineTemplate.metadata.labels`` and the VM rules on
    ``spec.virtualMachineTemplate.spec``."""
    spec = obj["spec"]
    template = spec.get("virtualMachineTemplate") or {}
    causes = check_replicas_and_selector(spec, (template.get("metadata") or {}).get("labels"))
    if template.get("spec") is None:
        return causes + [required("spec.virtualMachineTemplate.spec", "missing virtual machine template.")]
    return causes + compute_vm_spec_causes(template["spec"], "spec.virtualMachineTemplate.spec", ctx.cluster)
