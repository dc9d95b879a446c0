"""The VMIM create rules that need other objects, as a pure decision: the caller (virt-api) reads
the VMI and the VMIMs labelled ``kubevirt.io/vmi-name=<vmiName>`` in the namespace and asks
:func:`compute_create_refusal`.

Source: KubeVirt ``pkg/virt-api/webhooks/validating-webhook/admitters/migration-create-admitter.go``
(kubevirt-api.md §6.3 "VMIM create rules"): in this order, the VMI must exist, must not be final,
must not be ``LiveMigratable=False`` (except ``DisksNotLiveMigratable`` for a decentralized
migration), and no other VMIM of it may be in flight (phase not Succeeded/Failed). KubeVirt does
not refuse a VMI that is still Pending or Scheduling: its migration waits (the ``migrate``
subresource of a VM, by contrast, answers 409 "VM is not running").

These refusals are "generic" admission errors: HTTP 400 with only a message, which the API server
prefixes with the webhook's name (:func:`admission_denied`)."""

from __future__ import annotations

from typing import Any

from shared.api.migration_vocabulary import LiveMigratableReason, is_final_migration_phase
from shared.api.vocabulary import FINAL_PHASES, ConditionStatus, ConditionType
from shared.errors import ApiError

MIGRATION_CREATE_WEBHOOK = "migration-create-validator.kubevirt.io"
KUBEVIRT_CREATE_WEBHOOK = "kubevirt-create-validator.kubevirt.io"
VMI_FINAL = "Cannot migrate VMI in finalized state."
KUBEVIRT_EXISTS = "Kubevirt is already created"


def vmi_missing_message(namespace: str, name: str) -> str:
    """KubeVirt's text for a VMIM naming a VMI that does not exist."""
    return f'the VMI "{namespace}/{name}" does not exist'


def not_migratable_message(reason: str, message: str) -> str:
    """KubeVirt's text for a VMI whose ``LiveMigratable`` condition is False."""
    return f"Cannot migrate VMI, Reason: {reason}, Message: {message}"


def in_flight_message(uid: str, vmi_name: str) -> str:
    """KubeVirt's text when another migration of the VMI has not ended."""
    return (f"in-flight migration detected. Active migration job ({uid}) is currently already in progress "
            f"for VMI {vmi_name}.")


def _is_decentralized(spec: dict[str, Any]) -> bool:
    return spec.get("sendTo") is not None or spec.get("receive") is not None


def _not_migratable(vmi: dict[str, Any], decentralized: bool) -> str | None:
    for condition in (vmi.get("status") or {}).get("conditions") or []:
        if condition.get("type") != ConditionType.LIVE_MIGRATABLE or condition.get("status") != ConditionStatus.FALSE:
            continue
        reason = condition.get("reason") or ""
        if reason == LiveMigratableReason.DISKS_NOT_LIVE_MIGRATABLE and decentralized:
            continue
        return not_migratable_message(reason, condition.get("message") or "")
    return None


def compute_create_refusal(vmim: dict[str, Any], vmi: dict[str, Any] | None,
                           migrations: list[dict[str, Any]]) -> str | None:
    """KubeVirt's message refusing the creation of ``vmim`` (an admitted object: namespace and
    ``spec.vmiName`` set), or None to accept it. ``vmi`` is the named VMI (None: none exists);
    ``migrations`` are the stored VMIMs labelled with its name in the namespace."""
    spec = vmim.get("spec") or {}
    vmi_name = spec.get("vmiName") or ""
    if vmi is None:
        return vmi_missing_message((vmim.get("metadata") or {}).get("namespace") or "", vmi_name)
    if ((vmi.get("status") or {}).get("phase") or "") in FINAL_PHASES:
        return VMI_FINAL
    refusal = _not_migratable(vmi, _is_decentralized(spec))
    if refusal is not None:
        return refusal
    for other in migrations:
        if is_final_migration_phase((other.get("status") or {}).get("phase")):
            continue
        other_spec = other.get("spec") or {}
        return in_flight_message((other.get("metadata") or {}).get("uid") or "", other_spec.get("vmiName") or "")
    return None


def compute_kubevirt_create_refusal(existing: list[dict[str, Any]]) -> str | None:
    """KubeVirt's kubevirt-create-admitter: a second KubeVirt object is refused."""
    return KUBEVIRT_EXISTS if existing else None


def admission_denied(webhook: str, message: str) -> ApiError:
    """A generic admission refusal as the API server returns a webhook's: HTTP 400, no reason,
    message ``admission webhook "<webhook>" denied the request: <message>``."""
    return ApiError(f'admission webhook "{webhook}" denied the request: {message}', code=400, reason="")
