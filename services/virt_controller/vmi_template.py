"""The VMI a VM (or a replica set) creates from its template (pure).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``setupVMIFromVM``,
``setupStableFirmwareUUID``, ``setGenerationAnnotationOnVmi``, ``startVMI``) and
``pkg/virt-controller/watch/replicaset/replicaset.go`` (``createVMIFromTemplate``).

Our additions: the label ``kubevirt.io/vm=<vm name>`` on VM-owned VMIs (lets ``kubectl get vmi
-l kubevirt.io/vm=x`` find them) and ``status.phase: Pending`` with its transition timestamp,
which KubeVirt's VMI mutating webhook sets on create.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import msgspec

from shared.api.meta import ObjectMeta, OwnerReference
from shared.api.replicaset import VirtualMachineInstanceReplicaSet
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstanceTemplateSpec
from shared.api.vocabulary import Phase
from shared.tracing import TRACE_ID_ANNOTATION, TRACEPARENT_ANNOTATION

VM_CONTROLLER_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
VMI_CONTROLLER_FINALIZER = "kubevirt.io/foregroundDeleteVirtualMachine"
VM_GENERATION_ANNOTATION = "kubevirt.io/vm-generation"
VM_LABEL = "kubevirt.io/vm"
# KubeVirt's namespace for the legacy stable firmware UUID (pkg/virt-controller/watch/vm).
FIRMWARE_UUID_NAMESPACE = uuid.UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895")
API_VERSION = "kubevirt.io/v1"
VMI_KIND = "VirtualMachineInstance"
PAUSED_START_STRATEGY = "Paused"


class _HasMetadata(Protocol):
    @property
    def metadata(self) -> ObjectMeta | None: ...


def compute_stable_firmware_uuid(vm_name: str) -> str:
    """UUIDv5 (SHA-1) of the VM name in KubeVirt's namespace: the same UUID on every start."""
    return str(uuid.uuid5(FIRMWARE_UUID_NAMESPACE, vm_name))


def _meta(obj: _HasMetadata) -> ObjectMeta:
    return obj.metadata or ObjectMeta()


def controller_ref(owner: _HasMetadata, kind: str, api_version: str = API_VERSION) -> dict[str, Any]:
    """An ownerReference (JSON-ready) marking ``owner`` as the controller
    (``metav1.NewControllerRef``). Raises ValueError when ``owner`` has no name or uid."""
    meta = _meta(owner)
    if not meta.name or not meta.uid:
        raise ValueError(f"a {kind} without name or uid cannot own objects")
    return {"apiVersion": api_version, "kind": kind, "name": meta.name, "uid": meta.uid,
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: _HasMetadata | None) -> OwnerReference | None:
    """The ownerReference with ``controller: true``, if any."""
    if obj is None or obj.metadata is None:
        return None
    for ref in obj.metadata.owner_references or ():
        if ref.controller:
            return ref
    return None


def is_controlled_by(obj: _HasMetadata | None, owner: _HasMetadata | None) -> bool:
    """``obj``'s controller reference points at ``owner``'s uid."""
    ref = controller_of(obj)
    return ref is not None and owner is not None and owner.metadata is not None \
        and ref.uid == owner.metadata.uid


def _pending_status(now: str) -> dict[str, Any]:
    return {"phase": Phase.PENDING.value,
            "phaseTransitionTimestamps": [{"phase": Phase.PENDING.value, "phaseTransitionTimestamp": now}]}


def _template_spec(template: VirtualMachineInstanceTemplateSpec | None) -> dict[str, Any]:
    """The template's spec as a fresh JSON-ready dict, with a disk for every volume that has
    none (KubeVirt ``util.SetDefaultVolumeDisk``)."""
    spec: dict[str, Any] = msgspec.to_builtins(template.spec) if template is not None and \
        template.spec is not None else {}
    devices = spec.setdefault("domain", {}).setdefault("devices", {})
    disks = devices.get("disks")
    named = {d.get("name") for d in disks or []}
    extra = [{"name": v["name"]} for v in spec.get("volumes") or []
             if v.get("name") and v["name"] not in named]
    if extra:
        devices["disks"] = list(disks or []) + extra
    return spec


def compute_vmi_for_vm(vm: VirtualMachine, *, start_paused: bool, now: str) -> dict[str, Any]:
    """The VMI to create for ``vm``, as the JSON-ready body of the create.

    Name and namespace are the VM's; labels/annotations from ``spec.template.metadata`` plus
    ``kubevirt.io/vm``; ``kubevirt.io/vm-generation`` annotation; the VM's trace annotations
    (``kubevirt-py.io/trace-id``/``traceparent``, ours); controller ownerReference to
    the VM; finalizer ``kubevirt.io/virtualMachineControllerFinalize``; spec = template spec
    with ``startStrategy: Paused`` when ``start_paused``, a stable ``firmware.uuid`` when empty
    and a disk for every volume. ``now`` is the RFC 3339 time (microseconds) of the Pending
    transition. Raises ValueError for a VM without name or uid.
    """
    meta = _meta(vm)
    name = meta.name or ""
    template = vm.spec.template
    tmeta = template.metadata or ObjectMeta()
    labels = dict(tmeta.labels or {})
    labels[VM_LABEL] = name
    annotations = dict(tmeta.annotations or {})
    annotations[VM_GENERATION_ANNOTATION] = str(meta.generation or 1)
    # The VMI belongs to the VM's latest operation even when no reconcile span is current to
    # stamp it (the controller's own stamp, under its reconcile span, replaces these).
    vm_annotations = meta.annotations or {}
    for key in (TRACE_ID_ANNOTATION, TRACEPARENT_ANNOTATION):
        annotations.pop(key, None)
        if vm_annotations.get(key):
            annotations[key] = vm_annotations[key]
    spec = _template_spec(template)
    if start_paused:
        spec["startStrategy"] = PAUSED_START_STRATEGY
    firmware = spec["domain"].setdefault("firmware", {})
    if not firmware.get("uuid"):
        firmware["uuid"] = compute_stable_firmware_uuid(name)
    return {
        "apiVersion": API_VERSION,
        "kind": VMI_KIND,
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [controller_ref(vm, "VirtualMachine")],
            "finalizers": [VM_CONTROLLER_FINALIZER],
        },
        "spec": spec,
        "status": _pending_status(now),
    }


def compute_vmi_for_replica_set(rs: VirtualMachineInstanceReplicaSet, *, now: str) -> dict[str, Any]:
    """A VMI create body for replica set ``rs``: ``generateName: <rs name>``, template
    labels/annotations, controller ownerReference to the replica set, template spec (disks for
    bare volumes)."""
    meta = _meta(rs)
    template = rs.spec.template
    tmeta = template.metadata or ObjectMeta()
    vmi_meta: dict[str, Any] = {
        "generateName": meta.name,
        "namespace": meta.namespace,
        "labels": dict(tmeta.labels or {}),
        "ownerReferences": [controller_ref(rs, "VirtualMachineInstanceReplicaSet")],
    }
    if tmeta.annotations:
        vmi_meta["annotations"] = dict(tmeta.annotations)
    return {"apiVersion": API_VERSION, "kind": VMI_KIND, "metadata": vmi_meta,
            "spec": _template_spec(template), "status": _pending_status(now)}
