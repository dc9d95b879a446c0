"""REST verbs on stored resources: create, get, list, watch, update, patch, delete, deletecollection.

Owns: the request flow of every verb on ``/api/v1/...`` and ``/apis/<group>/<version>/...``
resource URLs — read and decode the body, apply the URL's namespace, run ObjectMeta rules and
admission (:func:`shared.admission.admit`; on create also :mod:`~services.virt_api.store_admission`),
call the :class:`shared.store.ObjectStore`, answer with the object, a List, a Table or a watch
stream, plus ``Warning`` headers.
URL parsing and dispatch are in :mod:`services.virt_api.routing`; errors become Status bodies in
:mod:`services.virt_api.app`'s middleware. Kubernetes semantics followed (apiserver
``endpoints/handlers`` and ``registry/generic``): create of a namespaced object takes the URL's
namespace and refuses a different one (400); update needs ``metadata.resourceVersion`` (custom
resources do not allow unconditional updates); a patch without a resourceVersion is retried on a
conflicting concurrent write, one with a stale resourceVersion gets 409.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.virt_api.negotiation import (Accept, decode_object, decode_object_with_duplicates, encode_response,
                                           parse_accept, read_body)
from services.virt_api.object_meta import apply_metadata_rules, clear_server_owned_fields
from services.virt_api.patch import apply_patch, check_patch_type, compute_patch_precondition
from services.virt_api.printers import to_table
from services.virt_api.safe_decoding import duplicate_field_message
from services.virt_api.store_admission import admit_create_against_store
from services.virt_api.watch import stream_watch
from shared import tracing
from shared.api.resources import ResourceInfo
from shared.errors import BadRequest, Conflict, MethodNotAllowed, NotFound, StatusCause, invalid

FIELD_VALIDATION_VALUES = ("Strict", "Warn", "Ignore")
PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")
#: Groups whose objects carry the trace of the operation that wrote them (KubeVirt's core objects;
#: snapshots and restores, whose trace virt-snapshot's reconciles join).
TRACED_GROUPS = ("kubevirt.io", "snapshot.kubevirt.io")
#: How long (seconds) a patch without a resourceVersion is re-applied while concurrent writes win
#: the CAS: like the Kubernetes API server's GuaranteedUpdate, an unconditional patch does not
#: answer 409 because someone else wrote (e.g. a controller's status) — it is applied again to the
#: new version, after a short random pause growing to PATCH_RETRY_PAUSE_MAX so writers spread out.
PATCH_CONFLICT_BUDGET = 20.0
PATCH_RETRY_PAUSE_MAX = 0.5


@dataclass(frozen=True)
class Target:
    """What a resource URL points at. ``namespace`` None = cluster-scoped or all namespaces;
    ``name`` None = the collection; ``subresource`` is ``"status"`` or None."""

    resource: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None = None


@dataclass(frozen=True)
class WriteOptions:
    """Query parameters shared by writes: ``dryRun=All`` and ``fieldValidation``."""

    dry_run: bool
    field_validation: str


def compute_write_options(query: Any) -> WriteOptions:
    """Read ``dryRun`` (only ``All`` is defined by Kubernetes) and ``fieldValidation``
    (``Strict|Warn|Ignore``, default ``Warn``) from the query; BadRequest for other values."""
    dry = query.getall("dryRun", [])
    for value in dry:
        if value != "All":
            raise BadRequest(f'Invalid dry run value "{value}": only "All" is supported')
    fv = query.get("fieldValidation") or "Warn"
    if fv not in FIELD_VALIDATION_VALUES:
        raise BadRequest(f'Invalid fieldValidation value "{fv}": must be one of Strict, Warn, Ignore')
    return WriteOptions(dry_run=bool(dry), field_validation=fv)


def decode_write_body(raw: bytes, content_type: str | None, info: ResourceInfo,
                      field_validation: str) -> tuple[dict[str, Any], list[str]]:
    """The object of a create/update body and the ``Warning`` texts its duplicate fields earn.

    A field given twice in one object (``{"name": "a", "name": "b"}``) keeps its last value, as
    in Kubernetes, and is handled by ``fieldValidation`` like an unknown field: ``Strict`` ->
    Invalid (422) with one ``FieldValueDuplicate`` cause per path (``metadata.name``), ``Warn``
    -> a ``duplicate field "metadata.name"`` warning, ``Ignore`` -> nothing (and no second
    parse). Decoding errors are those of :func:`services.virt_api.negotiation.decode_object`."""
    if field_validation == "Ignore":
        return decode_object(raw, content_type), []
    body, duplicates = decode_object_with_duplicates(raw, content_type)
    if duplicates and field_validation == "Strict":
        metadata = body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        raise invalid(info.kind, name if isinstance(name, str) else None, [
            StatusCause(path, duplicate_field_message(path), "FieldValueDuplicate") for path in duplicates
        ], group=info.group)
    return body, [duplicate_field_message(path) for path in duplicates]


#: Bodies above this size are decoded in a worker thread, so that a large YAML document (seconds
#: of pure-Python parsing near the 3 MiB limit) does not stall every other request meanwhile.
DECODE_IN_THREAD_BYTES = 256 * 1024


async def decode_write_body_off_loop(raw: bytes, content_type: str | None, info: ResourceInfo,
                                     field_validation: str) -> tuple[dict[str, Any], list[str]]:
    """:func:`decode_write_body`, in a worker thread for bodies over :data:`DECODE_IN_THREAD_BYTES`."""
    if len(raw) > DECODE_IN_THREAD_BYTES:
        return await asyncio.to_thread(decode_write_body, raw, content_type, info, field_validation)
    return decode_write_body(raw, content_type, info, field_validation)


def is_true(value: str | None) -> bool:
    """Kubernetes' boolean query values: ``1``/``true``/``True`` are true."""
    return (value or "").lower() in ("1", "true")


def parse_int(query: Any, name: str, *, minimum: int | None = None) -> int | None:
    """An optional integer query parameter; BadRequest when it is not an integer or below ``minimum``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f'{name}: invalid value "{raw}": must be an integer') from None
    if minimum is not None and value < minimum:
        raise BadRequest(f"{name}: invalid value {value}: must be at least {minimum}")
    return value


def check_kind(body: dict[str, Any], info: ResourceInfo) -> None:
    """The body must say it is this resource (``apiVersion`` and ``kind``), as kube-apiserver's
    decoder demands; BadRequest (400) naming what is missing or different."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if not kind:
        raise BadRequest("Object 'Kind' is missing in the request body")
    if not api_version:
        raise BadRequest("Object 'apiVersion' is missing in the request body")
    if kind != info.kind or api_version != info.api_version:
        raise BadRequest(f"the object in the body is {api_version}, Kind={kind} but this URL serves "
                         f"{info.api_version}, Kind={info.kind}")


class ResourceHandlers:
    """The verbs, bound to one store; ``admit`` defaults to :func:`shared.admission.admit`."""

    def __init__(self, store: Any, admit: Any = None) -> None:
        self.store = store
        if admit is None:
            from shared.admission import admit  # the API-TYPES helper's pure functions
        self.admit = admit

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, request: web.Request, target: Target) -> web.StreamResponse:
        accept = parse_accept(request.headers.get("Accept"))
        obj = await self.store.get(target.resource.plural, target.namespace, target.name)
        return self._render(request, target.resource, [obj], accept, single=obj)

    async def list(self, request: web.Request, target: Target) -> web.StreamResponse:
        """List, or watch when ``watch=1``; ``labelSelector``/``fieldSelector`` filter both."""
        q = request.query
        accept = parse_accept(request.headers.get("Accept"))
        info = target.resource
        label_selector = q.get("labelSelector") or None
        field_selector = q.get("fieldSelector") or None
        if is_true(q.get("watch")):
            timeout = parse_int(q, "timeoutSeconds", minimum=0)
            events = self.store.watch(
                info.plural, target.namespace, resource_version=q.get("resourceVersion") or None,
                label_selector=label_selector, field_selector=field_selector,
            )
            render = None
            if accept.table:
                include = q.get("includeObject") or "Metadata"
                render = lambda obj: _table(info, [obj], include, accept)  # noqa: E731
            return await stream_watch(
                request, events, timeout_seconds=timeout, allow_bookmarks=is_true(q.get("allowWatchBookmarks")),
                render=render,
            )
        items, rv = await self.store.list(
            info.plural, target.namespace, label_selector=label_selector, field_selector=field_selector
        )
        if accept.table:
            table = _table(info, items, q.get("includeObject") or "Metadata", accept)
            table.setdefault("metadata", {})["resourceVersion"] = rv
            return encode_response(table)
        return encode_response(
            {"apiVersion": info.api_version, "kind": info.list_kind, "metadata": {"resourceVersion": rv},
             "items": items},
            accept=accept,
        )

    # -- writes --------------------------------------------------------------------------------
    async def create(self, request: web.Request, target: Target) -> web.StreamResponse:
        info = target.resource
        if info.namespaced and target.namespace is None:
            raise MethodNotAllowed(f"create of {info.plural} needs a namespace in the URL "
                                   f"(/apis/{info.group}/{info.version}/namespaces/<namespace>/{info.plural})")
        opts = compute_write_options(request.query)
        body, warnings = await decode_write_body_off_loop(
            await read_body(request), request.headers.get("Content-Type"), info, opts.field_validation)
        self._apply_url_namespace(body, target)
        metadata = body["metadata"]
        if metadata.get("resourceVersion"):
            raise BadRequest("resourceVersion should not be set on objects to be created")
        clear_server_owned_fields(metadata)
        apply_metadata_rules(body, kind=info.kind, group=info.group, namespaced=info.namespaced)
        if "status" in info.subresources:
            body.pop("status", None)  # status is written through /status only (CRD status subresource rule)
        result = self.admit(info, body, operation="CREATE", field_validation=opts.field_validation)
        warnings += result.warnings
        await admit_create_against_store(self.store, info, result.obj)
        if opts.dry_run:
            return encode_response(result.obj, status=201, warnings=warnings)
        apply_operation_trace(info, result.obj)
        created = await _shielded(self.store.create(info.plural, result.obj, namespaced=info.namespaced))
        return encode_response(created, status=201, warnings=warnings)

    async def update(self, request: web.Request, target: Target) -> web.StreamResponse:
        info = target.resource
        opts = compute_write_options(request.query)
        body, warnings = await decode_write_body_off_loop(
            await read_body(request), request.headers.get("Content-Type"), info, opts.field_validation)
        self._apply_url_namespace(body, target)
        metadata = body["metadata"]
        if metadata.setdefault("name", target.name) != target.name:
            raise BadRequest(f'the name of the object ({metadata["name"]}) does not match the name on the URL '
                             f"({target.name})")
        if not metadata.get("resourceVersion"):
            raise invalid(info.kind, target.name, [StatusCause(
                "metadata.resourceVersion", "must be specified for an update", "FieldValueInvalid")],
                group=info.group)
        apply_metadata_rules(body, kind=info.kind, group=info.group, namespaced=info.namespaced)
        old = await self.store.get(info.plural, target.namespace, target.name)
        result = self.admit(info, body, operation="UPDATE", old=old, field_validation=opts.field_validation)
        warnings += result.warnings
        obj = result.obj
        obj.setdefault("metadata", {})["resourceVersion"] = metadata["resourceVersion"]
        if opts.dry_run:
            return encode_response(obj, warnings=warnings)
        apply_operation_trace(info, obj, target.subresource)
        updated = await _shielded(self.store.update(
            info.plural, obj, subresource=target.subresource, has_status_subresource="status" in info.subresources
        ))
        return encode_response(updated, warnings=warnings)

    async def patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        info = target.resource
        content_type = request.headers.get("Content-Type")
        check_patch_type(content_type, info.group)
        opts = compute_write_options(request.query)
        raw = await read_body(request)
        deadline = asyncio.get_running_loop().time() + PATCH_CONFLICT_BUDGET
        attempt = 0
        pinned: str | None = None  # the resourceVersion the patch itself sets (a precondition)
        while True:
            attempt += 1
            current = await self.store.get(info.plural, target.namespace, target.name)
            if attempt == 1:
                pinned = compute_patch_precondition(current, raw, content_type, info.group)
            patched = apply_patch(current, raw, content_type, info.group)
            check_kind(patched, info)
            metadata = patched.get("metadata")
            if not isinstance(metadata, dict):
                raise BadRequest("the patch removed or replaced metadata")
            for key in ("name", "namespace"):
                if metadata.get(key) != current["metadata"].get(key):
                    raise BadRequest(f"metadata.{key} cannot be changed by a patch")
            current_rv = current["metadata"]["resourceVersion"]
            if pinned and pinned != current_rv:
                raise Conflict(
                    f'Operation cannot be fulfilled on {info.plural}.{info.group or "core"} "{target.name}": '
                    "the object has been modified; please apply your changes to the latest version and try again",
                    kind=info.plural, name=target.name, group=info.group,
                )
            metadata["resourceVersion"] = current_rv
            apply_metadata_rules(patched, kind=info.kind, group=info.group, namespaced=info.namespaced)
            result = self.admit(info, patched, operation="UPDATE", old=current, field_validation=opts.field_validation)
            obj = result.obj
            obj.setdefault("metadata", {})["resourceVersion"] = current_rv
            if opts.dry_run:
                return encode_response(obj, warnings=result.warnings)
            apply_operation_trace(info, obj, target.subresource)
            try:
                updated = await _shielded(self.store.update(
                    info.plural, obj, subresource=target.subresource,
                    has_status_subresource="status" in info.subresources,
                ))
            except Conflict:
                if pinned or asyncio.get_running_loop().time() >= deadline:
                    raise
                # someone wrote in between: re-apply the patch to the new version, a moment later
                await asyncio.sleep(random.uniform(0, min(PATCH_RETRY_PAUSE_MAX, 0.01 * 2 ** attempt)))
                continue
            return encode_response(updated, warnings=result.warnings)

    async def delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        info = target.resource
        opts = await self._delete_options(request)
        if opts["uid"] is not None:
            current = await self.store.get(info.plural, target.namespace, target.name)
            if current["metadata"].get("uid") != opts["uid"]:
                raise Conflict(
                    f'Precondition failed: UID in precondition: {opts["uid"]}, UID in object meta: '
                    f'{current["metadata"].get("uid")}', kind=info.plural, name=target.name, group=info.group)
        if opts["dry_run"]:
            obj = await self.store.get(info.plural, target.namespace, target.name)
            return encode_response(obj)
        deleted = await _shielded(self.store.delete(
            info.plural, target.namespace, target.name, precondition_rv=opts["resource_version"],
            grace_period_seconds=opts["grace_period"], propagation_policy=opts["propagation"],
        ))
        return encode_response(deleted)

    async def delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        """Delete every object the selectors match (in the URL's namespace or all); answers the
        List of what was deleted (objects already gone meanwhile are skipped)."""
        info = target.resource
        opts = await self._delete_options(request)
        q = request.query
        items, _ = await self.store.list(info.plural, target.namespace, label_selector=q.get("labelSelector") or None,
                                         field_selector=q.get("fieldSelector") or None)
        deleted = []
        for item in items:
            meta = item["metadata"]
            if opts["dry_run"]:
                deleted.append(item)
                continue
            try:
                deleted.append(await _shielded(self.store.delete(
                    info.plural, meta.get("namespace") if info.namespaced else None, meta["name"],
                    grace_period_seconds=opts["grace_period"], propagation_policy=opts["propagation"],
                )))
            except NotFound:
                continue
        return encode_response({"apiVersion": info.api_version, "kind": info.list_kind, "metadata": {},
                                "items": deleted})

    # -- helpers -------------------------------------------------------------------------------
    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        """DeleteOptions from the body (JSON/YAML) merged over the query parameters."""
        q = request.query
        raw = await read_body(request)
        body: dict[str, Any] = decode_object(raw, request.headers.get("Content-Type")) if raw.strip() else {}
        grace = body.get("gracePeriodSeconds", parse_int(q, "gracePeriodSeconds"))
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
            raise BadRequest(f"gracePeriodSeconds: invalid value {grace!r}: must be a non-negative integer")
        propagation = body.get("propagationPolicy") or q.get("propagationPolicy") or "Background"
        if propagation not in PROPAGATION_POLICIES:
            raise BadRequest(f'propagationPolicy: Unsupported value: "{propagation}": supported values: '
                             '"Foreground", "Background", "Orphan"')
        if body.get("orphanDependents") is True or is_true(q.get("orphanDependents")):
            propagation = "Orphan"
        pre = body.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise BadRequest("preconditions must be an object")
        dry = body.get("dryRun") or q.getall("dryRun", [])
        if not isinstance(dry, list) or any(v != "All" for v in dry):
            raise BadRequest('Invalid dry run value: only "All" is supported')
        return {
            "grace_period": grace, "propagation": propagation, "dry_run": bool(dry),
            "uid": pre.get("uid"), "resource_version": pre.get("resourceVersion"),
        }

    def _apply_url_namespace(self, body: dict[str, Any], target: Target) -> None:
        check_kind(body, target.resource)
        metadata = body.get("metadata")
        if metadata is None:
            metadata = body["metadata"] = {}
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object")
        if not target.resource.namespaced:
            metadata.pop("namespace", None)
            return
        given = metadata.get("namespace")
        if given and given != target.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        metadata["namespace"] = target.namespace

    def _render(self, request: web.Request, info: ResourceInfo, objects: builtins.list[dict[str, Any]], accept: Accept,
                single: dict[str, Any]) -> web.StreamResponse:
        if accept.table:
            return encode_response(_table(info, objects, request.query.get("includeObject") or "Metadata", accept))
        return encode_response(single, accept=accept)


def _table(info: ResourceInfo, objects: list[dict[str, Any]], include: str, accept: Accept) -> dict[str, Any]:
    """The objects as a ``meta.k8s.io`` Table (``includeObject`` None, Metadata or Object)."""
    if include not in ("None", "Metadata", "Object"):
        raise BadRequest(f'includeObject: Unsupported value: "{include}": '
                         'supported values: "None", "Metadata", "Object"')
    table = to_table(info, objects, include_object=include)
    table["apiVersion"] = f"meta.k8s.io/{accept.table_version}"
    return table


async def _shielded(coro: Any) -> Any:
    """Run a store write to completion even if the client disconnects (the handler is cancelled
    then): a half-done write must never depend on a socket."""
    return await asyncio.shield(coro)


def apply_operation_trace(info: ResourceInfo, obj: dict[str, Any], subresource: str | None = None) -> None:
    """Record the request's trace on a KubeVirt or snapshot object being written (annotations of
    :func:`shared.tracing.apply_trace_annotations`), so its reconciles join the trace. Status
    writes are a controller's, not a user operation: left alone."""
    if info.group in TRACED_GROUPS and subresource != "status":
        tracing.apply_trace_annotations(obj)
