"""Server-side printing: ``meta.k8s.io/v1`` Tables with KubeVirt's printer columns, the
answer to ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` that ``kubectl get``
sends (columns from KubeVirt's CRDs, pkg/virt-operator/resource/generate/components/crds.go;
Node, Lease and PersistentVolumeClaim columns as kube-apiserver prints them,
pkg/printers/internalversion/printers.go).

As for custom resources in kube-apiserver, the first column is always ``Name``, ``date``
columns are rendered as ages (``5m``, ``3h2m``, Kubernetes' HumanDuration) and a value the
object does not have is ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.api.resources import ResourceInfo
from shared.api.vocabulary import ConditionStatus, ConditionType, parse_time, utc_now
from shared.errors import BadRequest
from shared.human_duration import format_age

INCLUDE_OBJECT_MODES = ("None", "Metadata", "Object")
NAME_DESCRIPTION = "Name of the object, unique within its namespace (or the cluster)."
AGE_DESCRIPTION = "Time since the object was created (metadata.creationTimestamp)."


@dataclass(frozen=True)
class Column:
    """A printer column: ``path`` is a KubeVirt CRD JSONPath (``.status.phase``,
    ``.status.interfaces[0].ipAddress``, ``.status.conditions[?(@.type=='Ready')].status``)
    or ``value`` computes the cell; ``type`` is string, integer or date."""

    name: str
    type: str
    path: str = ""
    description: str = ""
    priority: int = 0
    value: Callable[[dict[str, Any]], Any] | None = None
    age: bool = False
    """Render the (RFC 3339) value as an age whatever ``type`` says (kube-apiserver's built-in
    printers declare their ``Age`` column a string)."""

    def definition(self) -> dict[str, Any]:
        """The ``columnDefinitions`` entry."""
        return {"name": self.name, "type": self.type, "format": "", "description": self.description,
                "priority": self.priority}


def _ready(kind: str) -> str:
    return f".status.conditions[?(@.type=='{kind}')].status"


AGE = Column("Age", "date", ".metadata.creationTimestamp", AGE_DESCRIPTION)
REPLICA_COLUMNS = (
    Column("Desired", "integer", ".spec.replicas", "Number of desired replicas"),
    Column("Current", "integer", ".status.replicas", "Number of managed replicas that are not final or deleted"),
    Column("Ready", "integer", ".status.readyReplicas", "Number of managed replicas that are ready"),
    AGE,
)


def _node_status(node: dict[str, Any]) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == ConditionType.READY), None)
    if ready is None:
        status = "Unknown"
    else:
        status = "Ready" if ready.get("status") == ConditionStatus.TRUE else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_roles(node: dict[str, Any]) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    return ",".join(roles) or "<none>"


def _node_address(kind: str) -> Callable[[dict[str, Any]], str]:
    """The first ``status.addresses`` entry of type ``kind``, else ``<none>`` (printers.go
    getNodeInternalIP / getNodeExternalIP)."""

    def cell(node: dict[str, Any]) -> str:
        addresses = (node.get("status") or {}).get("addresses") or []
        return next((str(a.get("address")) for a in addresses if a.get("type") == kind), "<none>")

    return cell


def _node_info(field: str) -> Callable[[dict[str, Any]], str]:
    """``status.nodeInfo.<field>``, ``<unknown>`` when empty (printers.go printNode, wide)."""

    def cell(node: dict[str, Any]) -> str:
        return str(((node.get("status") or {}).get("nodeInfo") or {}).get(field) or "<unknown>")

    return cell


#: kubectl's short access-mode names, in its order (GetAccessModesAsString).
ACCESS_MODE_NAMES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                     ("ReadWriteOncePod", "RWOP"))
BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def _claim_bound_to_volume(claim: dict[str, Any]) -> bool:
    return bool((claim.get("spec") or {}).get("volumeName"))


def _claim_status(claim: dict[str, Any]) -> str:
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return str((claim.get("status") or {}).get("phase") or "")


def _claim_capacity(claim: dict[str, Any]) -> str:
    if not _claim_bound_to_volume(claim):
        return ""
    return str(((claim.get("status") or {}).get("capacity") or {}).get("storage") or "0")


def _claim_access_modes(claim: dict[str, Any]) -> str:
    if not _claim_bound_to_volume(claim):
        return ""
    modes = set((claim.get("status") or {}).get("accessModes") or [])
    return ",".join(short for mode, short in ACCESS_MODE_NAMES if mode in modes)


def _claim_class(claim: dict[str, Any]) -> str:
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    if BETA_STORAGE_CLASS_ANNOTATION in annotations:
        return str(annotations[BETA_STORAGE_CLASS_ANNOTATION])
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def _claim_spec_value(key: str) -> Callable[[dict[str, Any]], str]:
    def value(claim: dict[str, Any]) -> str:
        return str((claim.get("spec") or {}).get(key) or "<unset>")
    return value


ERROR_COLUMN = Column("Error", "string", ".status.error.message")

COLUMNS: dict[str, tuple[Column, ...]] = {
    "VirtualMachine": (
        AGE,
        Column("Status", "string", ".status.printableStatus", "Human Readable Status"),
        Column("Ready", "string", _ready(ConditionType.READY)),
    ),
    "VirtualMachineInstance": (
        AGE,
        Column("Phase", "string", ".status.phase"),
        Column("IP", "string", ".status.interfaces[0].ipAddress"),
        Column("NodeName", "string", ".status.nodeName"),
        Column("Ready", "string", _ready(ConditionType.READY)),
        Column("Live-Migratable", "string", _ready(ConditionType.LIVE_MIGRATABLE), priority=1),
        Column("Paused", "string", _ready(ConditionType.PAUSED), priority=1),
    ),
    "VirtualMachineInstanceReplicaSet": REPLICA_COLUMNS,
    "VirtualMachinePool": REPLICA_COLUMNS,
    "VirtualMachineInstanceMigration": (
        Column("Phase", "string", ".status.phase", "The current phase of VM instance migration"),
        Column("VMI", "string", ".spec.vmiName", "The name of the VMI to perform the migration on"),
    ),
    "MigrationPolicy": (AGE,),
    "KubeVirt": (AGE, Column("Phase", "string", ".status.phase")),
    "Node": (
        Column("Status", "string", value=_node_status, description="Node readiness"),
        Column("Roles", "string", value=_node_roles, description="Roles from node-role.kubernetes.io/ labels"),
        AGE,
        Column("Version", "string", ".status.nodeInfo.kubeletVersion", "Kubelet version"),
        Column("Internal-IP", "string", value=_node_address("InternalIP"), priority=1,
               description="The node's first InternalIP address"),
        Column("External-IP", "string", value=_node_address("ExternalIP"), priority=1,
               description="The node's first ExternalIP address"),
        Column("OS-Image", "string", value=_node_info("osImage"), priority=1, description="OS image of the node"),
        Column("Kernel-Version", "string", value=_node_info("kernelVersion"), priority=1,
               description="Kernel version of the node"),
        Column("Container-Runtime", "string", value=_node_info("containerRuntimeVersion"), priority=1,
               description="Container runtime of the node"),
    ),
    "Lease": (Column("Holder", "string", ".spec.holderIdentity", "Current holder of the lease"), AGE),
    "VirtualMachineSnapshot": (
        Column("SourceKind", "string", ".spec.source.kind"),
        Column("SourceName", "string", ".spec.source.name"),
        Column("Phase", "string", ".status.phase"),
        Column("ReadyToUse", "boolean", ".status.readyToUse"),
        Column("CreationTime", "date", ".status.creationTime"),
        ERROR_COLUMN,
    ),
    "VirtualMachineSnapshotContent": (
        Column("ReadyToUse", "boolean", ".status.readyToUse"),
        Column("CreationTime", "date", ".status.creationTime"),
        ERROR_COLUMN,
    ),
    "VirtualMachineRestore": (
        Column("TargetKind", "string", ".spec.target.kind"),
        Column("TargetName", "string", ".spec.target.name"),
        Column("Complete", "boolean", ".status.complete"),
        Column("RestoreTime", "date", ".status.restoreTime"),
    ),
    "PersistentVolumeClaim": (
        Column("Status", "string", value=_claim_status, description="Phase of the claim (Terminating when deleted)"),
        Column("Volume", "string", value=lambda claim: str((claim.get("spec") or {}).get("volumeName") or ""),
               description="The binding reference to the volume backing this claim"),
        Column("Capacity", "string", value=_claim_capacity, description="Actual resources of the underlying volume"),
        Column("Access Modes", "string", value=_claim_access_modes,
               description="Actual access modes the volume backing the claim has"),
        Column("StorageClass", "string", value=_claim_class, description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", "string", value=_claim_spec_value("volumeAttributesClassName"),
               description="VolumeAttributesClass of the pvc"),
        Column("Age", "string", ".metadata.creationTimestamp", AGE_DESCRIPTION, age=True),
        Column("VolumeMode", "string", value=_claim_spec_value("volumeMode"), priority=1,
               description="What type of volume is required by the claim"),
    ),
}

_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==['\"]([^'\"]*)['\"]\)\]")


def evaluate_path(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath (fields, ``[n]``, ``[?(@.key=='value')]`` filters),
    or None when any step is missing. Raises ValueError for a path outside that subset."""
    position = 0
    value = obj
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {position}")
        position = match.end()
        field, index, filter_key, filter_value = match.groups()
        if field is not None:
            value = value.get(field) if isinstance(value, dict) else None
        elif index is not None:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            matches = [v for v in value if isinstance(v, dict) and v.get(filter_key) == filter_value] \
                if isinstance(value, list) else []
            value = matches[0] if matches else None
        if value is None:
            return None
    return value


def _parse_time(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def _cell(column: Column, obj: dict[str, Any], now: datetime) -> Any:
    value = column.value(obj) if column.value is not None else evaluate_path(obj, column.path)
    if value is None and column.type == "date" and column.path != AGE.path:
        return None  # a CRD date column the object lacks (a snapshot's creationTime before it is set)
    if column.type == "date" or column.age:
        created = _parse_time(value) if isinstance(value, str) else None
        if created is None:
            return "<unknown>"
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return format_age((now - created).total_seconds())
    return value


def _row_object(obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def to_table(
    resource: ResourceInfo,
    objects: list[dict[str, Any]],
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` with ``resource``'s printer columns.

    ``include_object`` is the ``includeObject`` query value: ``None`` (no object),
    ``Metadata`` (a PartialObjectMetadata per row; kubectl's default) or ``Object``; others
    raise BadRequest. ``now`` (UTC, default the current time) is what ages are measured from."""
    if include_object not in INCLUDE_OBJECT_MODES:
        raise BadRequest(f'invalid includeObject "{include_object}": must be one of None, Metadata, Object')
    now = now or utc_now()
    columns = COLUMNS.get(resource.kind, (AGE,))
    name_column = {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [(obj.get("metadata") or {}).get("name"), *(_cell(c, obj, now) for c in columns)],
        }
        included = _row_object(obj, include_object)
        if included is not None:
            row["object"] = included
        rows.append(row)
    metadata = {"resourceVersion": resource_version} if resource_version else {}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [name_column, *(c.definition() for c in columns)],
        "rows": rows,
    }
