"""Kubernetes ``meta.k8s.io/v1`` types: ObjectMeta, ListMeta, OwnerReference, Status,
WatchEvent, Table and PartialObjectMetadata (source: k8s.io/apimachinery pkg/apis/meta/v1).

Only the shapes live here; Status bodies are rendered by :mod:`shared.errors` and Tables by
``services.virt_api.printers``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from shared.api.base import ApiStruct, Int32, Int64, Object, StrMap, describe


class OwnerReference(ApiStruct, kw_only=True):
    """Points at the object that owns this one (garbage collection follows it)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(ApiStruct, kw_only=True):
    """Server-side-apply bookkeeping; stored as given."""

    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: str | None = None
    fields_type: str | None = None
    fields_v1: Object | None = msgspec.field(default=None, name="fieldsV1")
    subresource: str | None = None


class ObjectMeta(ApiStruct, kw_only=True):
    """Standard object metadata. ``labels`` and ``annotations`` take any string keys.

    Timestamps are RFC 3339 strings (``2026-12-02T07:00:00Z``); ``resourceVersion`` is an
    opaque string (the store's KV revision)."""

    name: Annotated[str | None, describe("Name unique within a namespace.")] = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: Int64 | None = None
    labels: StrMap | None = None
    annotations: StrMap | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None


def has_finalizer(meta: ObjectMeta | None, name: str) -> bool:
    """Whether ``meta`` lists finalizer ``name``."""
    return meta is not None and name in (meta.finalizers or ())


def with_finalizer(meta: ObjectMeta | None, name: str, present: bool) -> ObjectMeta:
    """``meta`` with finalizer ``name`` added at the end (``present``, when missing) or removed;
    an empty list becomes None (omitted, as Kubernetes omits it)."""
    meta = meta or ObjectMeta()
    current = list(meta.finalizers or ())
    if present and name not in current:
        current.append(name)
    if not present:
        current = [f for f in current if f != name]
    return msgspec.structs.replace(meta, finalizers=current or None)


class ListMeta(ApiStruct, kw_only=True):
    """Metadata of a list response."""

    self_link: str | None = None
    resource_version: str | None = None
    continue_: str | None = msgspec.field(default=None, name="continue")
    remaining_item_count: Int64 | None = None


class StatusCause(ApiStruct, kw_only=True):
    """One cause of a failure; ``field`` is a JSON path such as ``spec.running``."""

    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(ApiStruct, kw_only=True):
    """Extra data of a Status (which object, which fields)."""

    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retry_after_seconds: Int32 | None = None


class Status(ApiStruct, kw_only=True):
    """``meta.k8s.io/v1`` Status: the body of every error response."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ListMeta | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: Int32 | None = None


class WatchEvent(ApiStruct, kw_only=True):
    """One line of a watch stream: ``type`` is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    type: str
    object: Object


class TableColumnDefinition(ApiStruct, kw_only=True):
    """A Table column (``kubectl get`` header); ``priority`` > 0 shows only with ``-o wide``."""

    name: str
    type: str
    format: str = ""
    description: str = ""
    priority: Int32 = 0


class TableRow(ApiStruct, kw_only=True):
    """A Table row: one cell per column and, optionally, the object (PartialObjectMetadata)."""

    cells: list[Any]
    object: Object | None = None
    conditions: list[Object] | None = None


class Table(ApiStruct, kw_only=True):
    """``meta.k8s.io/v1`` Table, the server-side printing format of ``kubectl get``."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ListMeta | None = None
    column_definitions: list[TableColumnDefinition] | None = None
    rows: list[TableRow] | None = None


class PartialObjectMetadata(ApiStruct, kw_only=True):
    """An object reduced to its metadata (Table rows with ``includeObject=Metadata``)."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None


class Condition(ApiStruct, kw_only=True):
    """A KubeVirt status condition (VM, VMI, VMIM, VMIRS, pool)."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_probe_time: str | None = None
    last_transition_time: str | None = None


class LabelSelectorRequirement(ApiStruct, kw_only=True):
    """``key`` ``operator`` (In, NotIn, Exists, DoesNotExist) ``values``."""

    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(ApiStruct, kw_only=True):
    """Kubernetes LabelSelector: all ``matchLabels`` and all ``matchExpressions`` must hold."""

    match_labels: StrMap | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None
