"""VM updates while a snapshot or a restore holds the VM (KubeVirt
``pkg/storage/admitters/vm-storage-status.go``, run by the VM webhook on every VM update).

The lock is the stored VM's ``status.snapshotInProgress`` / ``status.restoreInProgress`` (a write
to the main resource keeps the stored status, as with Kubernetes' status subresource):

* snapshot in progress: the template's ``volumes`` may not change ("Cannot update vm disks or
  volumes until snapshot ... completes") nor the run state (``running``/``runStrategy``:
  "Cannot update vm running state until snapshot ... completes");
* restore in progress: a spec change may not change the run strategy ("Cannot update VM
  runStrategy until restore ... completes").

All causes are ``FieldValueNotSupported`` at ``spec``; the snapshot rule is checked first and
only the first refusal is returned, as KubeVirt does.
"""

from __future__ import annotations

from typing import Any

from shared.api.run_strategy import RunStrategyError, read_run_strategy
from shared.errors import StatusCause

VM_WEBHOOK = "virtualmachine-validator.kubevirt.io"


def volumes_locked_message(snapshot: str) -> str:
    """KubeVirt's text refusing a volume change during a snapshot."""
    return f'Cannot update vm disks or volumes until snapshot "{snapshot}" completes'


def running_locked_message(snapshot: str) -> str:
    """KubeVirt's text refusing a run-state change during a snapshot."""
    return f'Cannot update vm running state until snapshot "{snapshot}" completes'


def run_strategy_locked_message(restore: str) -> str:
    """KubeVirt's text refusing a run-strategy change during a restore."""
    return f'Cannot update VM runStrategy until restore "{restore}" completes'


def _volumes(spec: dict[str, Any]) -> list[Any]:
    return list((((spec.get("template") or {}).get("spec") or {}).get("volumes")) or [])


def same_running_spec(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """KubeVirt ``compareRunningSpec``: both ``running`` set and equal, or both ``runStrategy``
    set and equal; anything else (one switched to the other) is a change."""
    if old.get("running") is not None and new.get("running") is not None:
        return bool(old["running"] == new["running"])
    if old.get("runStrategy") is not None and new.get("runStrategy") is not None:
        return bool(old["runStrategy"] == new["runStrategy"])
    return False


def _strategy(spec: dict[str, Any]) -> str | None:
    try:
        return str(read_run_strategy(spec.get("running"), spec.get("runStrategy")))
    except RunStrategyError:
        return None


def compute_vm_lock_causes(new: dict[str, Any], old: dict[str, Any]) -> list[StatusCause]:
    """The cause refusing the update of ``old`` (the stored VM) to ``new``, or []."""
    status = old.get("status") or {}
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    snapshot = status.get("snapshotInProgress")
    if snapshot is not None:
        if _volumes(old_spec) != _volumes(new_spec):
            return [StatusCause("spec", volumes_locked_message(snapshot), "FieldValueNotSupported")]
        if not same_running_spec(old_spec, new_spec):
            return [StatusCause("spec", running_locked_message(snapshot), "FieldValueNotSupported")]
    restore = status.get("restoreInProgress")
    if restore is not None and old_spec != new_spec and _strategy(old_spec) != _strategy(new_spec):
        return [StatusCause("spec", run_strategy_locked_message(restore), "FieldValueNotSupported")]
    return []


def lock_refusal_message(cause: StatusCause) -> str:
    """What a caller of the VM API (virt-api's start/stop subresources) sees of the refusal:
    ``admission webhook "virtualmachine-validator.kubevirt.io" denied the request: <message>``."""
    return f'admission webhook "{VM_WEBHOOK}" denied the request: {cause.message}'
