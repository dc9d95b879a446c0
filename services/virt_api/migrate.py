"""The ``migrate`` subresource of a VirtualMachine: ``PUT .../virtualmachines/<name>/migrate``
with ``MigrateOptions{addedNodeSelector, dryRun}`` creates a VirtualMachineInstanceMigration
(``generateName: kubevirt-migrate-vm-``) for the VM's VMI and answers 202.

KubeVirt ``pkg/virt-api/rest/lifecycle.go`` (``MigrateVMRequestHandler``; kubevirt-api.md §5):
a body that does not decode is 400 "Can not unmarshal Request body to struct, error: ..."; no VM
or no VMI is 404; a VMI not in phase Running is 409 "VM is not running"; the VMIM goes through
the same admission as any other create (the pure rules, then the store-reading rules) and a
refusal there comes back as KubeVirt returns it: 500 "Internal error occurred: <the refusal>".
``dryRun: ["All"]`` admits without storing. The VMIM carries the request's trace annotations, so
the migration's trace starts at this call.
"""

from __future__ import annotations

from typing import Any

from services.virt_api.negotiation import decode_object
from services.virt_api.store_admission import admit_migration_create
from services.virt_api.subresource_rules import VM_NOT_RUNNING, VMIS, VMS, conflict, is_dry_run, phase_of
from shared import tracing
from shared.admission import admit
from shared.api.resources import VIRTUAL_MACHINE_INSTANCE_MIGRATION
from shared.api.vocabulary import Phase
from shared.errors import ApiError, BadRequest, InternalError

GENERATE_NAME = "kubevirt-migrate-vm-"
UNMARSHAL_ERROR = "Can not unmarshal Request body to struct, error: {}"


def compute_migrate_options(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """``MigrateOptions`` from a request body (empty: no options). Raises BadRequest with
    KubeVirt's unmarshal text when the body is not an object, ``addedNodeSelector`` not a map of
    strings or ``dryRun`` not a list of strings."""
    if not raw.strip():
        return {}
    try:
        options = decode_object(raw, content_type)
    except ApiError as err:
        raise BadRequest(UNMARSHAL_ERROR.format(err.message)) from None
    selector = options.get("addedNodeSelector")
    if selector is not None and (not isinstance(selector, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in selector.items())):
        raise BadRequest(UNMARSHAL_ERROR.format("addedNodeSelector must be a map of strings to strings"))
    dry = options.get("dryRun")
    if dry is not None and (not isinstance(dry, list) or not all(isinstance(v, str) for v in dry)):
        raise BadRequest(UNMARSHAL_ERROR.format("dryRun must be a list of strings"))
    return options


def compute_migration(namespace: str, vm_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The VMIM the subresource creates for VM ``vm_name`` (its VMI has the same name)."""
    spec: dict[str, Any] = {"vmiName": vm_name}
    if options.get("addedNodeSelector"):
        spec["addedNodeSelector"] = dict(options["addedNodeSelector"])
    info = VIRTUAL_MACHINE_INSTANCE_MIGRATION
    return {"apiVersion": info.api_version, "kind": info.kind,
            "metadata": {"generateName": GENERATE_NAME, "namespace": namespace}, "spec": spec}


async def migrate_vm(store: Any, namespace: str, name: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Create the VMIM for VM ``namespace/name``; returns the stored VMIM (the admitted one for a
    dry run). Raises NotFound, Conflict ("VM is not running") or InternalError (admission or
    store refused the VMIM)."""
    await store.get(VMS, namespace, name)
    vmi = await store.get(VMIS, namespace, name)
    if phase_of(vmi) != Phase.RUNNING:
        raise conflict("virtualmachine", name, VM_NOT_RUNNING)
    body = compute_migration(namespace, name, options)
    try:
        vmim = admit(VIRTUAL_MACHINE_INSTANCE_MIGRATION, body, operation="CREATE").obj
        await admit_migration_create(store, vmim)
        if is_dry_run(options):
            return vmim
        tracing.apply_trace_annotations(vmim)
        created: dict[str, Any] = await store.create(VIRTUAL_MACHINE_INSTANCE_MIGRATION.plural, vmim, namespaced=True)
        return created
    except ApiError as err:
        raise InternalError(f"Internal error occurred: {err.message}") from None


async def _handle(call: Any) -> None:
    options = compute_migrate_options(call.body, call.request.headers.get("Content-Type"))
    await migrate_vm(call.store, call.namespace, call.name, options)


def register(registry: Any) -> None:
    """Serve ``PUT virtualmachines/<name>/migrate`` (``SubresourceRegistry.add``)."""
    registry.add(VMS, "migrate", "PUT", _handle)
