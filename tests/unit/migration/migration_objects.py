"""Typed inputs for virt-migration's pure decisions: VMIMs and VMIs built from the few fields a
test cares about (JSON-ready, KubeVirt's names), converted into the shared.api Structs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import format_micro_time

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
NS = "default"


def ago(seconds: float) -> str:
    return format_micro_time(NOW - timedelta(seconds=seconds))


def as_dict(value: Any) -> Any:
    return msgspec.to_builtins(value)


def make_vmim(name: str = "mig", *, phase: str | None = None, uid: str | None = None, vmi: str = "vm1",
              created: str = "2026-03-01T11:00:00Z", deleting: bool = False, finalizers: list[str] | None = None,
              state: dict | None = None, stamps: list[tuple[str, str]] | None = None,
              annotations: dict | None = None, conditions: list[dict] | None = None) -> VirtualMachineInstanceMigration:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid or f"uid-{name}", "creationTimestamp": created,
                            "resourceVersion": "7"}
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if annotations:
        meta["annotations"] = annotations
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if stamps:
        status["phaseTransitionTimestamps"] = [{"phase": p, "phaseTransitionTimestamp": t} for p, t in stamps]
    if state is not None:
        status["migrationState"] = state
    if conditions:
        status["conditions"] = conditions
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": meta,
            "spec": {"vmiName": vmi}}
    if status:
        body["status"] = status
    return msgspec.convert(body, VirtualMachineInstanceMigration)


def make_vmi(name: str = "vm1", *, node: str | None = "node-a", phase: str = "Running", state: dict | None = None,
             labels: dict | None = None, deleting: bool = False, migratable: bool | None = True,
             eviction: str | None = None, evacuation: str | None = None,
             annotations: dict | None = None) -> VirtualMachineInstance:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"vmi-{name}", "resourceVersion": "3"}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    status: dict[str, Any] = {"phase": phase}
    if node:
        status["nodeName"] = node
    if state is not None:
        status["migrationState"] = state
    if migratable is not None:
        status["conditions"] = [{"type": "LiveMigratable", "status": "True" if migratable else "False"}]
    if evacuation:
        status["evacuationNodeName"] = evacuation
    spec: dict[str, Any] = {"domain": {}}
    if eviction:
        spec["evictionStrategy"] = eviction
    return msgspec.convert({"metadata": meta, "spec": spec, "status": status}, VirtualMachineInstance)
