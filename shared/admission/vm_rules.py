"""Admission of VirtualMachines (kubevirt-api.md §4, §6.1 VM mutator, KubeVirt
vms-admitter.go): run strategy rules, DataVolume templates, and every VMI rule on a defaulted
copy of the template (paths ``spec.template.spec...``). On CREATE the template gets the VM
mutator's defaults: architecture, machine type, firmware UUID and serial."""

from __future__ import annotations

from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.context import AdmissionContext
from shared.admission.fields import at, forbidden, invalid_value, not_supported, required
from shared.admission.vm_lock_rules import compute_vm_lock_causes
from shared.admission.vmi_rules import compute_defaulted_spec_causes
from shared.api.vm import RUN_STRATEGIES
from shared.errors import StatusCause

RUNNING_DEPRECATED_WARNING = "spec.running is deprecated, please use spec.runStrategy instead."
DV_SOURCE_KEYS = ("source", "sourceRef")


def check_run_strategy(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Exactly one of ``running`` and ``runStrategy``; a known strategy (WaitAsReceiver only
    with the DecentralizedLiveMigration gate)."""
    running = spec.get("running")
    strategy = spec.get("runStrategy")
    if running is not None and strategy is not None:
        return [invalid_value(
            at(path, "running"),
            "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, "
            "please use RunStrategy instead: remove spec.running",
        )]
    if running is None and strategy is None:
        return [
            required(
                at(path, "runStrategy"),
                "RunStrategy must be specified (one of Always, RerunOnFailure, Manual, Halted, Once)",
            )
        ]
    if strategy is not None and strategy not in RUN_STRATEGIES:
        return [not_supported(at(path, "runStrategy"), f"Invalid RunStrategy ({strategy})")]
    if strategy == "WaitAsReceiver" and not cluster.is_enabled("DecentralizedLiveMigration"):
        return [
            forbidden(
                at(path, "runStrategy"), "RunStrategy WaitAsReceiver needs the DecentralizedLiveMigration feature gate"
            )
        ]
    return []


def check_data_volume_templates(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Each DataVolume template is named, referenced by a ``dataVolume`` volume of the
    template, has exactly one of ``pvc``/``storage`` and one source."""
    causes: list[StatusCause] = []
    volumes = ((spec.get("template") or {}).get("spec") or {}).get("volumes") or []
    referenced = {(v.get("dataVolume") or {}).get("name") for v in volumes} | {
        (v.get("persistentVolumeClaim") or {}).get("claimName") for v in volumes
    }
    for i, template in enumerate(spec.get("dataVolumeTemplates") or []):
        field = at(path, "dataVolumeTemplates", i)
        name = (template.get("metadata") or {}).get("name")
        if not name:
            causes.append(
                required(
                    at(field, "metadata", "name"),
                    "'name' field must not be empty for DataVolumeTemplate entry " + field,
                )
            )
        elif name not in referenced:
            causes.append(not_found_in_volumes(field, name))
        dv_spec = template.get("spec") or {}
        if ("pvc" in dv_spec) == ("storage" in dv_spec):
            causes.append(invalid_value(at(field, "spec"), "DataVolume must have exactly one of pvc or storage set"))
        sources = [k for k in DV_SOURCE_KEYS if isinstance(dv_spec.get(k), dict) and dv_spec[k]]
        if len(sources) != 1 or ("source" in sources and len(dv_spec["source"]) != 1):
            causes.append(
                invalid_value(at(field, "spec"), "DataVolume must have exactly one source (source.<type> or sourceRef)")
            )
    return causes


def not_found_in_volumes(field: str, name: str) -> StatusCause:
    """The cause for a DataVolume template no volume refers to."""
    return invalid_value(
        at(field, "metadata", "name"),
        f"DataVolumeTemplate entry {field} must be referenced in the VMI template's 'volumes' list",
    )


VM_SPEC_RULES = (check_run_strategy, check_data_volume_templates)


def compute_vm_spec_causes(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """All causes of a VM ``spec`` at ``path`` (``spec``, or a pool's
    ``spec.virtualMachineTemplate.spec``), including the VMI rules on its template."""
    causes: list[StatusCause] = []
    for rule in VM_SPEC_RULES:
        causes.extend(rule(spec, path, cluster))
    template_spec = (spec.get("template") or {}).get("spec")
    if template_spec is None:
        causes.append(required(at(path, "template", "spec"), "missing virtual machine template."))
    else:
        _, template_causes = compute_defaulted_spec_causes(template_spec, at(path, "template", "spec"), cluster)
        causes.extend(template_causes)
    return causes


def compute_vm_template_defaults(spec: dict[str, Any], ctx: AdmissionContext) -> None:
    """The VM mutator's CREATE defaults on ``spec.template.spec``, in place: architecture,
    machine type, firmware UUID and serial (random UUIDs, KubeVirt vm-mutator)."""
    template_spec = (spec.get("template") or {}).get("spec")
    if template_spec is None:
        return
    arch = template_spec.setdefault("architecture", ctx.cluster.architecture)
    domain = template_spec.setdefault("domain", {})
    domain.setdefault("machine", {}).setdefault("type", ctx.cluster.machine_type(arch))
    firmware = domain.setdefault("firmware", {})
    if not firmware.get("uuid"):
        firmware["uuid"] = ctx.new_uuid()
    if not firmware.get("serial"):
        firmware["serial"] = ctx.new_uuid()


def admit_vm(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Validate (and on CREATE default) a VM in place; adds the ``spec.running`` deprecation
    warning to ``ctx.warnings``. On UPDATE of a VM a snapshot or restore holds, the changes
    :mod:`shared.admission.vm_lock_rules` refuses."""
    spec = obj["spec"]
    if spec.get("running") is not None:
        ctx.warnings.append(RUNNING_DEPRECATED_WARNING)
    causes = compute_vm_spec_causes(spec, "spec", ctx.cluster)
    if not causes and ctx.is_create:
        compute_vm_template_defaults(spec, ctx)
    if not causes and not ctx.is_create and ctx.old is not None:
        causes = compute_vm_lock_causes(obj, ctx.old)  # KubeVirt: the storage admitter after the spec rules
    return causes
