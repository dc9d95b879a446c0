"""Admission of VirtualMachineRestores (KubeVirt ``pkg/storage/admitters/vmrestore.go``).

Pure rules on the object (:func:`admit_restore`): CREATE - ``spec.target`` names a
VirtualMachine in ``kubevirt.io`` (as a snapshot's source), ``spec.patches`` are JSON patches on
``/spec/...`` (or ``/metadata/labels/...``, ``/metadata/annotations/...``), every
``volumeRestoreOverrides[i]`` names its volume and overrides something, ``volumeRestorePolicy``,
``volumeOwnershipPolicy`` and ``targetReadinessPolicy`` are known values (an unknown readiness
policy would leave the restore controller waiting forever); UPDATE - the spec is immutable.

Rules that read other objects (:func:`compute_restore_store_causes`; virt-api reads them):

* the snapshot must exist, must not have failed and must be ready to use (KubeVirt's admitter
  checked this until v1.4 - messages from there; newer KubeVirt defers it to the restore
  controller, which answers "VMSnapshot X not ready" - this API refuses early, as the issue asks);
* restoring into a VM other than the snapshot's source is refused when the snapshotted VM needs
  backend storage (persistent TPM or EFI);
* one restore in progress per target: another restore of the namespace with the same target
  that is not ``complete`` refuses the new one.
"""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import at, invalid_value, required
from shared.admission.snapshot_rules import check_source_reference, check_spec_unchanged
from shared.api.snapshot_vocabulary import (
    SnapshotPhase,
    TargetReadinessPolicy,
    VolumeOwnershipPolicy,
    VolumeRestorePolicy,
)
from shared.errors import StatusCause

BACKEND_STORAGE_MESSAGE = ("Restore to a different VM is not supported when snapshotted VM has backend storage "
                           "(persistent TPM or EFI)")


def patch_format_message(pair: str) -> str:
    """KubeVirt's text for a patch element that is not one ``"key": value`` pair."""
    return f'patch format is not valid - one ":" expected in a single key-value json patch: {pair}'


def patch_path_message(pair: str) -> str:
    """KubeVirt's text for a patch whose path is outside ``/spec/``."""
    return f"patching is valid only for elements under /spec/ only: {pair}"


def snapshot_missing_message(name: str) -> str:
    """KubeVirt's (v1.4 admitter) text when the named snapshot does not exist."""
    return f'VirtualMachineSnapshot "{name}" does not exist'


def snapshot_failed_message(name: str) -> str:
    """KubeVirt's (v1.4 admitter) text for a snapshot in phase Failed."""
    return f'VirtualMachineSnapshot "{name}" has failed and is invalid to use'


def snapshot_not_ready_message(name: str) -> str:
    """KubeVirt's (v1.4 admitter) text for a snapshot that is not ``readyToUse``."""
    return f'VirtualMachineSnapshot "{name}" is not ready to use'


def restore_in_progress_message(name: str) -> str:
    """KubeVirt's text when another restore of the same target has not completed."""
    return f'VirtualMachineRestore "{name}" in progress'


def check_patches(patches: list[str], path: str) -> list[StatusCause]:
    """KubeVirt's textual check of each JSON patch: the braces are trimmed, the text is split
    at commas into ``key: value`` pairs; a pair with other than one colon is refused, and a
    ``"path"`` must start with ``"/spec/``, ``"/metadata/labels/`` or ``"/metadata/annotations/``."""
    causes: list[StatusCause] = []
    for patch in patches:
        for pair in patch.strip("{}").split(","):
            key_value = pair.split(":")
            if len(key_value) != 2:
                causes.append(invalid_value(path, patch_format_message(pair)))
                continue
            key, value = key_value[0].strip(), key_value[1].strip()
            if key != '"path"':
                continue
            if value.startswith('"/metadata/labels/') or value.startswith('"/metadata/annotations/'):
                continue
            if not value.startswith('"/spec/'):
                causes.append(invalid_value(path, patch_path_message(pair)))
    return causes


def check_volume_overrides(spec: dict[str, Any]) -> list[StatusCause]:
    """Each override names a volume and overrides a name, labels or annotations."""
    causes: list[StatusCause] = []
    for i, override in enumerate(spec.get("volumeRestoreOverrides") or []):
        field = at("spec", "volumeRestoreOverrides", i)
        if not override.get("volumeName"):
            causes.append(required(at(field, "volumeName"), "must provide a volume name"))
        if not override.get("restoreName") and override.get("annotations") is None \
                and override.get("labels") is None:
            causes.append(required(field, "must provide at least one overriden field"))
    return causes


def check_policies(spec: dict[str, Any]) -> list[StatusCause]:
    """``volumeRestorePolicy``, ``volumeOwnershipPolicy`` and ``targetReadinessPolicy`` must be
    known values (``FieldValueInvalid``, KubeVirt's ``... policy "<v>" doesn't exist`` wording)."""
    causes: list[StatusCause] = []
    restore_policy = spec.get("volumeRestorePolicy")
    if restore_policy is not None and restore_policy not in set(VolumeRestorePolicy):
        causes.append(invalid_value("spec.volumeRestorePolicy",
                                    f'volume restore policy "{restore_policy}" doesn\'t exist'))
    ownership = spec.get("volumeOwnershipPolicy")
    if ownership is not None and ownership not in set(VolumeOwnershipPolicy):
        causes.append(invalid_value("spec.volumeOwnershipPolicy",
                                    f'volume ownership policy "{ownership}" doesn\'t exist'))
    readiness = spec.get("targetReadinessPolicy")
    if readiness is not None and readiness not in set(TargetReadinessPolicy):
        causes.append(invalid_value("spec.targetReadinessPolicy",
                                    f'target readiness policy "{readiness}" doesn\'t exist'))
    return causes


def admit_restore(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """The object-only causes refusing ``obj`` (a decoded VirtualMachineRestore)."""
    spec = obj.get("spec") or {}
    if not ctx.is_create:
        return check_spec_unchanged(obj, ctx.old)
    causes = check_source_reference(spec.get("target") or {}, "spec.target")
    if causes:
        return causes
    causes = check_patches(spec.get("patches") or [], "spec.patches")
    return causes + check_volume_overrides(spec) + check_policies(spec)


def needs_backend_storage(vm: dict[str, Any]) -> bool:
    """Whether a VM (as copied into a snapshot content) keeps state in backend storage:
    a persistent TPM or persistent EFI variables (KubeVirt ``IsBackendStorageNeeded``)."""
    domain = (((vm.get("spec") or {}).get("template") or {}).get("spec") or {}).get("domain") or {}
    tpm = (domain.get("devices") or {}).get("tpm") or {}
    efi = ((domain.get("firmware") or {}).get("bootloader") or {}).get("efi") or {}
    return tpm.get("persistent") is True or efi.get("persistent") is True


def check_snapshot(name: str, snapshot: dict[str, Any] | None) -> list[StatusCause]:
    """The snapshot ``name`` must exist, not be Failed and be ``readyToUse``."""
    field = "spec.virtualMachineSnapshotName"
    if snapshot is None:
        return [invalid_value(field, snapshot_missing_message(name))]
    status = snapshot.get("status") or {}
    causes = []
    if status.get("phase") == SnapshotPhase.FAILED:
        causes.append(invalid_value(field, snapshot_failed_message(name)))
    if status.get("readyToUse") is not True:
        causes.append(invalid_value(field, snapshot_not_ready_message(name)))
    return causes


def is_other_target(snapshot: dict[str, Any], target_vm: dict[str, Any] | None) -> bool:
    """Whether the restore target is not the snapshot's source VM (absent, or another uid)."""
    if target_vm is None:
        return True
    source_uid = (snapshot.get("status") or {}).get("sourceUID")
    return source_uid is not None and (target_vm.get("metadata") or {}).get("uid") != source_uid


def check_in_progress(restore: dict[str, Any], others: list[dict[str, Any]]) -> list[StatusCause]:
    """One cause per other restore with the same ``spec.target`` that is not complete."""
    target = (restore.get("spec") or {}).get("target")
    name = (restore.get("metadata") or {}).get("name")
    causes = []
    for other in others:
        if (other.get("metadata") or {}).get("name") == name and name:
            continue
        if (other.get("spec") or {}).get("target") != target:
            continue
        if (other.get("status") or {}).get("complete") is True:
            continue
        causes.append(invalid_value("spec.target", restore_in_progress_message(other["metadata"]["name"])))
    return causes


def compute_restore_store_causes(restore: dict[str, Any], snapshot: dict[str, Any] | None,
                                 target_vm: dict[str, Any] | None, content: dict[str, Any] | None,
                                 others: list[dict[str, Any]]) -> list[StatusCause]:
    """The causes refusing the creation of ``restore`` (admitted by :func:`admit_restore`) that
    need other objects: its snapshot (None: absent), the target VM (None: absent), the
    snapshot's content (None: absent or not read) and the restores of its namespace."""
    spec = restore.get("spec") or {}
    causes = check_snapshot(spec.get("virtualMachineSnapshotName") or "", snapshot)
    if snapshot is not None and content is not None and is_other_target(snapshot, target_vm):
        snapshot_vm = ((content.get("spec") or {}).get("source") or {}).get("virtualMachine")
        if snapshot_vm is not None and needs_backend_storage(snapshot_vm):
            causes.append(invalid_value("spec", BACKEND_STORAGE_MESSAGE))
    return causes + check_in_progress(restore, others)
