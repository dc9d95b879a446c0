"""Admission of VirtualMachineInstances: all VMI spec rules in one list (storage, compute,
firmware, lifecycle, devices, access, network), KubeVirt's reserved-label rule, the
update restriction, and the VMI admitter that defaults on CREATE and validates.

The same ``compute_vmi_spec_causes`` validates VMI templates of VMs, replica sets and pools
with a prefixed path (``spec.template.spec``), as KubeVirt's admitters do."""

from __future__ import annotations

from typing import Any

import msgspec

from shared.admission.cluster import ClusterConfig
from shared.admission.context import AdmissionContext
from shared.admission.fields import forbidden
from shared.admission.rules_access import ACCESS_RULES
from shared.admission.rules_compute import COMPUTE_RULES
from shared.admission.rules_devices import DEVICE_RULES
from shared.admission.rules_firmware import FIRMWARE_RULES
from shared.admission.rules_lifecycle import LIFECYCLE_RULES
from shared.admission.rules_network import NETWORK_RULES
from shared.admission.rules_quantities import check_quantities
from shared.admission.rules_storage import STORAGE_RULES
from shared.admission.vmi_defaults import compute_vmi_spec_defaults, compute_vmi_status_on_create
from shared.api.vmi import VirtualMachineInstanceSpec
from shared.errors import StatusCause

VMI_SPEC_RULES = (
    *STORAGE_RULES,
    *COMPUTE_RULES,
    *FIRMWARE_RULES,
    *LIFECYCLE_RULES,
    *DEVICE_RULES,
    *ACCESS_RULES,
    *NETWORK_RULES,
)
"""Every VMI spec rule, ``rule(spec, path, cluster) -> list[StatusCause]``, in KubeVirt's order."""

RESERVED_LABELS = (
    "kubevirt.io/created-by",
    "kubevirt.io/migrationJobUID",
    "kubevirt.io/nodeName",
    "kubevirt.io/migrationTargetNodeName",
    "kubevirt.io/schedulable",
    "kubevirt.io/install-strategy",
)
"""Labels only KubeVirt's components may set on a VMI (kubevirt-api.md §3)."""


def compute_vmi_spec_causes(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """All causes of a (defaulted) VMI ``spec`` whose JSON path is ``path``."""
    causes: list[StatusCause] = []
    for rule in VMI_SPEC_RULES:
        causes.extend(rule(spec, path, cluster))
    return causes


def compute_defaulted_spec_causes(
    spec: dict[str, Any], path: str, cluster: ClusterConfig
) -> tuple[dict[str, Any] | None, list[StatusCause]]:
    """Quantity syntax first; then the VMI defaults and every rule on the defaulted copy.
    Returns ``(defaulted spec or None, causes)``."""
    causes = check_quantities(spec, path)
    if causes:
        return None, causes
    defaulted = compute_vmi_spec_defaults(spec, cluster, new_uuid=lambda: "00000000-0000-0000-0000-000000000000")
    return defaulted, compute_vmi_spec_causes(defaulted, path, cluster)


def check_reserved_labels(
    labels: dict[str, str] | None, old_labels: dict[str, str] | None, path: str
) -> list[StatusCause]:
    """Users may not add or change KubeVirt's reserved labels (kubevirt-api.md §6.3 rule 50)."""
    labels = labels or {}
    old_labels = old_labels or {}
    touched = sorted(k for k in RESERVED_LABELS if k in labels and labels.get(k) != old_labels.get(k))
    if not touched:
        return []
    return [
        forbidden(
            path,
            "creation of the following reserved kubevirt.io/ labels on a VMI object is prohibited: "
            f"{', '.join(touched)}",
        )
    ]


def _normalized(spec: Any) -> Any:
    try:
        return msgspec.to_builtins(msgspec.convert(spec, VirtualMachineInstanceSpec))
    except msgspec.ValidationError:
        return spec


def _is_same_after_defaults(spec: dict[str, Any], stored: dict[str, Any], cluster: ClusterConfig) -> bool:
    """Whether ``spec`` equals the stored spec once the create-time defaults are applied again
    (re-applying a manifest with ``kubectl apply`` replaces lists such as ``volumes`` and so
    drops defaulted fields like ``imagePullPolicy``; that is no change)."""
    if check_quantities(spec, "spec"):
        return False
    stored_uuid = ((stored.get("domain") or {}).get("firmware") or {}).get("uuid") or ""
    return compute_vmi_spec_defaults(spec, cluster, new_uuid=lambda: stored_uuid) == stored


def admit_vmi(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Default (CREATE) and validate a VMI in place; returns the causes (empty = admitted)."""
    metadata = obj.get("metadata") or {}
    old = ctx.old or {}
    causes: list[StatusCause] = []
    if not ctx.trusted:
        causes += check_reserved_labels(
            metadata.get("labels"), (old.get("metadata") or {}).get("labels"), "metadata.labels"
        )
    if ctx.is_create:
        quantity_causes = check_quantities(obj["spec"], "spec")
        if quantity_causes:
            return causes + quantity_causes
        obj["spec"] = compute_vmi_spec_defaults(obj["spec"], ctx.cluster, new_uuid=ctx.new_uuid)
        obj["status"] = compute_vmi_status_on_create(obj["spec"], obj.get("status"), ctx.now())
        return causes + compute_vmi_spec_causes(obj["spec"], "spec", ctx.cluster)
    if not ctx.trusted and old.get("spec") is not None:
        stored = _normalized(old["spec"])
        if stored != obj["spec"] and not _is_same_after_defaults(obj["spec"], stored, ctx.cluster):
            return causes + [forbidden(
                "spec", "update of VMI object is restricted: the spec of a VMI cannot change; "
                "change its VirtualMachine, or delete and re-create the VMI",
            )]
        obj["spec"] = stored
    quantity_causes = check_quantities(obj["spec"], "spec")
    if quantity_causes:
        return causes + quantity_causes
    return causes + compute_vmi_spec_causes(obj["spec"], "spec", ctx.cluster)


