"""The VMI a VM (or a replica set) creates from its template (pure).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``setupVMIFromVM``,
``setupStableFirmwareUUID``, ``setGenerationAnnotationOnVmi``, ``startVMI``) and
``pkg/virt-controller/watch/replicaset/replicaset.go`` (``createVMIFromTemplate``).

Our additions: the label ``kubevirt.io/vm=<vm name>`` on VM-owned VMIs (lets ``kubectl get vmi
-l kubevirt.io/vm=x`` find them) and ``status.phase: Pending`` with its transition timestamp,
which KubeVirt's VMI mutating webhook sets on create.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from shared.tracing import TRACE_ID_ANNOTATION, TRACEPARENT_ANNOTATION

VM_CONTROLLER_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
VMI_CONTROLLER_FINALIZER = "kubevirt.io/foregroundDeleteVirtualMachine"
VM_GENERATION_ANNOTATION = "kubevirt.io/vm-generation"
VM_LABEL = "kubevirt.io/vm"
# KubeVirt's namespace for the legacy stable firmware UUID (pkg/virt-controller/watch/vm).
FIRMWARE_UUID_NAMESPACE = uuid.UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895")
API_VERSION = "kubevirt.io/v1"


def compute_stable_firmware_uuid(vm_name: str) -> str:
    """UUIDv5 (SHA-1) of the VM name in KubeVirt's namespace: the same UUID on every start."""
    return str(uuid.uuid5(FIRMWARE_UUID_NAMESPACE, vm_name))


def controller_ref(owner: dict[str, Any], kind: str) -> dict[str, Any]:
    """An ownerReference marking ``owner`` as the controller (``metav1.NewControllerRef``)."""
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion") or API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: dict[str, Any] | None, owner: dict[str, Any] | None) -> bool:
    """``obj``'s controller reference points at ``owner``'s uid."""
    ref = controller_of(obj)
    return ref is not None and owner is not None and \
        ref.get("uid") == (owner.get("metadata") or {}).get("uid")


def _pending_status(now: str) -> dict[str, Any]:
    return {"phase": "Pending",
            "phaseTransitionTimestamps": [{"phase": "Pending", "phaseTransitionTimestamp": now}]}


def _add_missing_disks(spec: dict[str, Any]) -> None:
    """A disk for every volume that has none (KubeVirt ``util.SetDefaultVolumeDisk``)."""
    disks = spec.setdefault("domain", {}).setdefault("devices", {}).get("disks")
    named = {d.get("name") for d in disks or []}
    extra = [{"name": v["name"]} for v in spec.get("volumes") or []
             if v.get("name") and v["name"] not in named]
    if extra:
        spec["domain"]["devices"]["disks"] = list(disks or []) + extra


def compute_vmi_for_vm(vm: dict[str, Any], *, start_paused: bool, now: str) -> dict[str, Any]:
    """The VMI to create for ``vm``.

    Name and namespace are the VM's; labels/annotations from ``spec.template.metadata`` plus
    ``kubevirt.io/vm``; ``kubevirt.io/vm-generation`` annotation; the VM's trace annotations
    (``kubevirt-py.io/trace-id``/``traceparent``, ours); controller ownerReference to
    the VM; finalizer ``kubevirt.io/virtualMachineControllerFinalize``; spec = template spec
    with ``startStrategy: Paused`` when ``start_paused``, a stable ``firmware.uuid`` when empty
    and a disk for every volume. ``now`` is the RFC 3339 time (microseconds) of the Pending transition.
    """
    meta = vm["metadata"]
    template = (vm.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[VM_LABEL] = meta["name"]
    annotations = dict(tmeta.get("annotations") or {})
    annotations[VM_GENERATION_ANNOTATION] = str(meta.get("generation") or 1)
    # The VMI belongs to the VM's latest operation even when no reconcile span is current to
    # stamp it (the controller's own stamp, under its reconcile span, replaces these).
    for key in (TRACE_ID_ANNOTATION, TRACEPARENT_ANNOTATION):
        annotations.pop(key, None)
        if (meta.get("annotations") or {}).get(key):
            annotations[key] = meta["annotations"][key]
    spec = copy.deepcopy(template.get("spec") or {})
    if start_paused:
        spec["startStrategy"] = "Paused"
    firmware = spec.setdefault("domain", {}).setdefault("firmware", {})
    if not firmware.get("uuid"):
        firmware["uuid"] = compute_stable_firmware_uuid(meta["name"])
    _add_missing_disks(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [controller_ref(vm, "VirtualMachine")],
            "finalizers": [VM_CONTROLLER_FINALIZER],
        },
        "spec": spec,
        "status": _pending_status(now),
    }


def compute_vmi_for_replica_set(rs: dict[str, Any], *, now: str) -> dict[str, Any]:
    """A VMI for replica set ``rs``: ``generateName: <rs name>``, template labels/annotations,
    controller ownerReference to the replica set, template spec (disks for bare volumes)."""
    meta = rs["metadata"]
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    _add_missing_disks(spec)
    vmi_meta: dict[str, Any] = {
        "generateName": meta["name"],
        "namespace": meta.get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_ref(rs, "VirtualMachineInstanceReplicaSet")],
    }
    if tmeta.get("annotations"):
        vmi_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": API_VERSION, "kind": "VirtualMachineInstance", "metadata": vmi_meta,
            "spec": spec, "status": _pending_status(now)}
