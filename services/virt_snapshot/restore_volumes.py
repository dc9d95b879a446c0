"""Restored claims and the restored VM of a VirtualMachineRestore (pure). Source: KubeVirt's
pkg/storage/snapshot/restore.go (restoreVolumeName, reconcileVolumeRestores,
CreateRestorePVCDefFromVMRestore, generateRestoredVMSpec, patchVM, setLegacyFirmwareUUID); the
controller that acts is :mod:`services.virt_snapshot.restore_controller`.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import jsonpatch

from services.virt_snapshot.restore_decision import RestoreError
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshotContent, VolumeBackup, VolumeRestore
from shared.api.snapshot_vocabulary import (
    LAST_RESTORE_ANNOTATION,
    RESTORE_NAME_ANNOTATION,
    RESTORE_OWNED_BY_VM_LABEL,
    RESTORE_SOURCE_NAME_LABEL,
    RESTORE_SOURCE_NAMESPACE_LABEL,
    VolumeOwnershipPolicy,
    VolumeRestorePolicy,
    restore_claim_name,
)

DNS1035_LABEL_MAX_LENGTH = 63


# -- claims -----------------------------------------------------------------------------------


def last_restore_value(restore: VirtualMachineRestore) -> str:
    """``restore.kubevirt.io/lastRestoreUID``: ``<restore name>-<restore uid>``."""
    meta = restore.metadata
    return f"{meta.name if meta else ''}-{meta.uid if meta else ''}"


def has_last_restore(restore: VirtualMachineRestore, annotations: dict[str, str] | None) -> bool:
    """Whether an object carries this restore's lastRestoreUID annotation (already restored)."""
    return (annotations or {}).get(LAST_RESTORE_ANNOTATION) == last_restore_value(restore)


def _cut_name(base: str, suffix: str, limit: int) -> str:
    """``<base>-<suffix>`` cut to ``limit`` (KubeVirt's naming.GetName keeps the suffix whole
    and shortens the base with a hash; here the base is cut and a short hash added)."""
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = max(limit - len(suffix) - len(digest) - 2, 1)
    return f"{base[:keep]}-{digest}-{suffix}"[:limit]


def restore_volume_name(restore: VirtualMachineRestore, volume_name: str, claim_name: str) -> str:
    """The restored claim's name: an override's ``restoreName``, else by ``volumeRestorePolicy``:
    InPlace → the original claim name; PrefixTargetName → ``<target>-<volume>`` (at most 63);
    RandomizeNames (default) → ``restore-<restore uid>-<volume>``."""
    for override in restore.spec.volume_restore_overrides or []:
        if override.volume_name == volume_name and override.restore_name:
            return override.restore_name
    policy = restore.spec.volume_restore_policy
    if policy == VolumeRestorePolicy.IN_PLACE:
        return claim_name
    if policy == VolumeRestorePolicy.PREFIX_TARGET_NAME:
        return _cut_name(restore.spec.target.name, volume_name, DNS1035_LABEL_MAX_LENGTH)
    return restore_claim_name((restore.metadata.uid if restore.metadata else None) or "", volume_name)


def _memory_dump_volumes(content: VirtualMachineSnapshotContent) -> set[str]:
    vm = content.spec.source.virtual_machine
    template = vm.spec.template if vm is not None and vm.spec is not None else None
    volumes = template.spec.volumes if template is not None and template.spec is not None else None
    return {v.name for v in volumes or [] if getattr(v, "memory_dump", None) is not None}


def compute_volume_restores(restore: VirtualMachineRestore,
                            content: VirtualMachineSnapshotContent) -> list[VolumeRestore]:
    """``status.restores``: one per volume backup (memory dumps excluded), existing entries kept.
    Raises RestoreError when a backup has no volumeSnapshotName."""
    existing = {r.volume_name: r for r in (restore.status.restores if restore.status else None) or []}
    skip = _memory_dump_volumes(content)
    out: list[VolumeRestore] = []
    for backup in content.spec.volume_backups or []:
        if backup.volume_name in skip:
            continue
        if backup.volume_name in existing:
            out.append(existing[backup.volume_name])
            continue
        if not backup.volume_snapshot_name:
            raise RestoreError(f"VolumeSnapshotName missing {backup.volume_name}")
        claim = backup.persistent_volume_claim.metadata
        claim_name = (claim.name if claim is not None else None) or ""
        out.append(VolumeRestore(volume_name=backup.volume_name,
                                 persistent_volume_claim_name=restore_volume_name(restore, backup.volume_name,
                                                                                  claim_name),
                                 volume_snapshot_name=backup.volume_snapshot_name))
    return out


_DROPPED_ANNOTATION_PREFIXES = ("pv.kubernetes.io", "volume.beta.kubernetes.io", "cdi.kubevirt.io",
                                "volume.kubernetes.io", "k8s.io/CloneRequest", "k8s.io/CloneOf")
_CONTENT_TYPE_ANNOTATION = "cdi.kubevirt.io/storage.contentType"
_BACKEND_PVC_LABEL = "persistent-state-for"


def owner_reference(vm_name: str, vm_uid: str) -> dict[str, Any]:
    """Controller owner reference to a VirtualMachine (KubeVirt's vmRestoreTarget.Own)."""
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": vm_name, "uid": vm_uid,
            "controller": True, "blockOwnerDeletion": True}


def source_claim_owned_by_vm(backup: VolumeBackup, vm_name: str | None, vm_uid: str | None) -> bool:
    """The backed-up claim had the source VM as an owner."""
    meta = backup.persistent_volume_claim.metadata
    return any(ref.kind == "VirtualMachine" and ref.name == vm_name and ref.uid == vm_uid
               for ref in (meta.owner_references if meta else None) or [])


def compute_restore_claim(restore: VirtualMachineRestore, backup: VolumeBackup, claim_name: str, *,
                          data_source: dict[str, Any], source_vm_name: str, source_vm_namespace: str,
                          source_vm_uid: str | None, target: tuple[str, str] | None) -> dict[str, Any]:
    """The body of a restored claim (KubeVirt's CreateRestorePVCDefFromVMRestore): the source
    claim's labels/annotations (provisioning annotations dropped), access modes, resources, class
    and mode; ``dataSource``/``dataSourceRef`` = the copy; restore labels and annotations; the
    volume's override labels/annotations; owner reference to ``target`` (name, uid) unless
    ``volumeOwnershipPolicy: None`` — for a new target, the annotation
    ``restore.kubevirt.io/owned-by-vm`` when the source VM owned the source claim."""
    source = backup.persistent_volume_claim
    meta = source.metadata
    labels = {k: v for k, v in ((meta.labels if meta else None) or {}).items() if k != _BACKEND_PVC_LABEL}
    annotations = {k: v for k, v in ((meta.annotations if meta else None) or {}).items()
                   if k == _CONTENT_TYPE_ANNOTATION or not k.startswith(_DROPPED_ANNOTATION_PREFIXES)}
    labels[RESTORE_SOURCE_NAME_LABEL] = source_vm_name
    labels[RESTORE_SOURCE_NAMESPACE_LABEL] = source_vm_namespace
    annotations[RESTORE_NAME_ANNOTATION] = (restore.metadata.name if restore.metadata else None) or ""
    annotations[LAST_RESTORE_ANNOTATION] = last_restore_value(restore)
    for override in restore.spec.volume_restore_overrides or []:
        if override.volume_name == backup.volume_name:
            labels.update(override.labels or {})
            annotations.update(override.annotations or {})
            break
    spec: dict[str, Any] = {}
    if source.spec is not None:
        if source.spec.access_modes:
            spec["accessModes"] = list(source.spec.access_modes)
        if source.spec.resources is not None:
            resources = source.spec.resources
            spec["resources"] = {k: dict(v) for k, v in (("requests", resources.requests),
                                                         ("limits", resources.limits)) if v}
        if source.spec.storage_class_name is not None:
            spec["storageClassName"] = source.spec.storage_class_name
        if source.spec.volume_mode is not None:
            spec["volumeMode"] = source.spec.volume_mode
    spec["dataSource"] = dict(data_source)
    spec["dataSourceRef"] = dict(data_source)
    body_meta: dict[str, Any] = {"name": claim_name, "namespace": (restore.metadata.namespace
                                                                    if restore.metadata else None),
                                 "labels": labels, "annotations": annotations}
    if restore.spec.volume_ownership_policy != VolumeOwnershipPolicy.NONE:
        if target is not None:
            body_meta["ownerReferences"] = [owner_reference(*target)]
        elif source_claim_owned_by_vm(backup, source_vm_name, source_vm_uid):
            annotations[RESTORE_OWNED_BY_VM_LABEL] = body_meta["annotations"][RESTORE_NAME_ANNOTATION]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": body_meta, "spec": spec}


# -- the restored VM --------------------------------------------------------------------------


def _firmware_uuid(vm: dict[str, Any] | None) -> str | None:
    """``spec.template.spec.domain.firmware.uuid`` of a VM dict (None when unset)."""
    spec = ((vm or {}).get("spec") or {}).get("template") or {}
    uuid = (((spec.get("spec") or {}).get("domain") or {}).get("firmware") or {}).get("uuid")
    return str(uuid) if uuid else None


def compute_restored_vm(restore: VirtualMachineRestore, snapshot_vm: dict[str, Any],
                        target_vm: dict[str, Any] | None, restores: list[VolumeRestore],
                        firmware_uuid: str) -> dict[str, Any]:
    """The VM to write (KubeVirt's generateRestoredVMSpec + patchVM).

    Args:
        snapshot_vm: the content's ``spec.source.virtualMachine`` (dict: metadata, spec, status).
        target_vm: the existing target (dict as stored) or None for a new VM.
        restores: ``status.restores``: ``persistentVolumeClaim`` volumes point at their claims.
        firmware_uuid: the stable firmware UUID of the VM's name, set when the snapshot's VM
            and the target have the same name and the spec has none (setLegacyFirmwareUUID).
            When the snapshot's spec has one, a target of another name keeps its own firmware
            UUID instead (an existing target's, else this one): kubevirt-py runs every VM of a
            node on one libvirt daemon whose domain UUID is the firmware UUID, so the copy could
            not run beside the original with the snapshot's (KubeVirt, one libvirt per pod,
            keeps the snapshot's).

    A new VM: the snapshot's labels/annotations and spec, ``runStrategy: Halted`` (or
    ``running: false`` when the spec used ``running``), the restore's JSON ``patches`` applied.
    An existing VM keeps its metadata and its run strategy. Both get
    ``restore.kubevirt.io/lastRestoreUID``. Memory-dump volumes are dropped. MAC addresses are
    kept as in the snapshot (KubeVirt leaves them; ``patches`` change them).
    Raises RestoreError for a bad patch."""
    by_volume = {r.volume_name: r.persistent_volume_claim_name for r in restores}
    snap_meta = snapshot_vm.get("metadata") or {}
    spec = copy.deepcopy(snapshot_vm.get("spec") or {})
    template_spec = spec.setdefault("template", {}).setdefault("spec", {})
    volumes = []
    for volume in template_spec.get("volumes") or []:
        if "memoryDump" in volume:
            continue
        volume = copy.deepcopy(volume)
        claim = volume.get("persistentVolumeClaim")
        if claim is not None and volume.get("name") in by_volume:
            claim["claimName"] = by_volume[volume["name"]]
        elif "dataVolume" in volume and volume.get("name") in by_volume:
            # no CDI here: a restored DataVolume volume becomes a claim volume
            volume = {"name": volume["name"], "persistentVolumeClaim": {"claimName": by_volume[volume["name"]]}}
        volumes.append(volume)
    if volumes or "volumes" in template_spec:
        template_spec["volumes"] = volumes
    if target_vm is None:
        meta: dict[str, Any] = {"name": restore.spec.target.name,
                                "namespace": restore.metadata.namespace if restore.metadata else None}
        if snap_meta.get("labels"):
            meta["labels"] = dict(snap_meta["labels"])
        meta["annotations"] = dict(snap_meta.get("annotations") or {})
        if spec.get("running") is not None:
            spec["running"] = False
        else:
            spec["runStrategy"] = "Halted"
        vm: dict[str, Any] = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": meta,
                              "spec": spec}
    else:
        vm = copy.deepcopy(target_vm)
        target_spec = target_vm.get("spec") or {}
        if target_spec.get("running") is not None:
            spec["running"] = False
            spec.pop("runStrategy", None)
        else:
            spec["runStrategy"] = target_spec.get("runStrategy") or "Halted"
            spec.pop("running", None)
        vm["spec"] = spec
        vm.setdefault("metadata", {})
        vm["metadata"]["annotations"] = dict(vm["metadata"].get("annotations") or {})
    vm["metadata"]["annotations"][LAST_RESTORE_ANNOTATION] = last_restore_value(restore)
    if snap_meta.get("name") == vm["metadata"].get("name"):
        domain = vm["spec"].setdefault("template", {}).setdefault("spec", {}).setdefault("domain", {})
        firmware = domain.setdefault("firmware", {})
        if not firmware.get("uuid"):
            firmware["uuid"] = firmware_uuid
    elif _firmware_uuid(vm):
        # kubevirt-py: one libvirt daemon per node and the domain UUID is the firmware UUID, so a VM
        # made from another VM's snapshot keeps its own (the target's, else the stable one of its name)
        vm["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"] = _firmware_uuid(target_vm) or firmware_uuid
    if target_vm is None and restore.spec.patches:
        text = "[\n" + ",\n".join(restore.spec.patches) + "\n]"
        try:
            vm = jsonpatch.JsonPatch.from_string(text).apply(vm)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError) as err:
            raise RestoreError(f"error patching VM {restore.spec.target.name}: {err}") from err
    return vm
