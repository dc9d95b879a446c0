"""Admission rules that read other objects, run by virt-api after the pure admission
(:func:`shared.admission.admit`) on every create, dry runs included — as KubeVirt's validating
webhooks, which read through the API.

Owns only the reads; the decisions are :mod:`shared.admission.migration_create`:

* a VirtualMachineInstanceMigration: the VMI it names and the VMIMs labelled
  ``kubevirt.io/vmi-name=<vmiName>`` in its namespace (KubeVirt migration-create-admitter.go);
* a KubeVirt object: every KubeVirt object (only one may exist, kubevirt-create-admitter.go);
* a VirtualMachineRestore: its snapshot, the target VM, the snapshot's content (when the target
  is another VM) and the restores of its namespace (KubeVirt vmrestore.go;
  :mod:`shared.admission.restore_rules`).

A VMIM or KubeVirt refusal is raised as :func:`shared.admission.migration_create.admission_denied`
(400); a restore's as Invalid (422) with its causes, as the pure admission's.
"""

from __future__ import annotations

from typing import Any

from shared.admission.migration_create import (
    KUBEVIRT_CREATE_WEBHOOK,
    MIGRATION_CREATE_WEBHOOK,
    admission_denied,
    compute_create_refusal,
    compute_kubevirt_create_refusal,
)
from shared.admission.restore_rules import compute_restore_store_causes, is_other_target
from shared.api.migration_vocabulary import VMI_NAME_LABEL
from shared.api.resources import (
    KUBEVIRT,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_INSTANCE,
    VIRTUAL_MACHINE_INSTANCE_MIGRATION,
    VIRTUAL_MACHINE_RESTORE,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_CONTENT,
    ResourceInfo,
)
from shared.errors import NotFound, invalid


async def admit_migration_create(store: Any, vmim: dict[str, Any]) -> None:
    """Raise the 400 refusal for creating ``vmim`` (admitted: namespace and vmiName set), if any."""
    namespace = vmim["metadata"]["namespace"]
    vmi_name = vmim["spec"]["vmiName"]
    try:
        vmi = await store.get(VIRTUAL_MACHINE_INSTANCE.plural, namespace, vmi_name)
    except NotFound:
        vmi = None
    migrations: list[dict[str, Any]] = []
    if vmi is not None:
        migrations, _ = await store.list(VIRTUAL_MACHINE_INSTANCE_MIGRATION.plural, namespace,
                                         label_selector=f"{VMI_NAME_LABEL}={vmi_name}")
    refusal = compute_create_refusal(vmim, vmi, migrations)
    if refusal is not None:
        raise admission_denied(MIGRATION_CREATE_WEBHOOK, refusal)


async def _get_or_none(store: Any, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    if not name:
        return None
    try:
        return await store.get(plural, namespace, name)
    except NotFound:
        return None


async def admit_restore_create(store: Any, restore: dict[str, Any]) -> None:
    """Raise the 422 refusing ``restore`` (admitted: namespace set) for what other objects say."""
    namespace = restore["metadata"]["namespace"]
    spec = restore.get("spec") or {}
    snapshot = await _get_or_none(store, VIRTUAL_MACHINE_SNAPSHOT.plural, namespace,
                                  spec.get("virtualMachineSnapshotName") or "")
    target = await _get_or_none(store, VIRTUAL_MACHINE.plural, namespace, (spec.get("target") or {}).get("name") or "")
    content = None
    if snapshot is not None and is_other_target(snapshot, target):
        content_name = (snapshot.get("status") or {}).get("virtualMachineSnapshotContentName") or ""
        content = await _get_or_none(store, VIRTUAL_MACHINE_SNAPSHOT_CONTENT.plural, namespace, content_name)
    others, _ = await store.list(VIRTUAL_MACHINE_RESTORE.plural, namespace)
    causes = compute_restore_store_causes(restore, snapshot, target, content, others)
    if causes:
        info = VIRTUAL_MACHINE_RESTORE
        name = restore["metadata"].get("name") or restore["metadata"].get("generateName")
        raise invalid(info.kind, name, causes, group=info.group)


async def admit_create_against_store(store: Any, info: ResourceInfo, obj: dict[str, Any]) -> None:
    """The store-reading create rules of ``info``'s kind (nothing for other kinds)."""
    if info is VIRTUAL_MACHINE_INSTANCE_MIGRATION:
        await admit_migration_create(store, obj)
    elif info is VIRTUAL_MACHINE_RESTORE:
        await admit_restore_create(store, obj)
    elif info is KUBEVIRT:
        existing, _ = await store.list(KUBEVIRT.plural)
        refusal = compute_kubevirt_create_refusal(existing)
        if refusal is not None:
            raise admission_denied(KUBEVIRT_CREATE_WEBHOOK, refusal)
