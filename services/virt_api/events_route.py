"""Core v1 Events at ``/api/v1/events`` and ``/api/v1/namespaces/<ns>/events[/<name>]``.

Owns: serving the Events the services record (:mod:`shared.events_recorder`) to kubectl:
list, watch and get, with the field selectors kube-apiserver accepts for Events
(``involvedObject.kind/namespace/name/uid/...``, ``reason``, ``type``, ``source``; what
``kubectl describe vm`` sends), and the Table kubectl prints (LAST SEEN, TYPE, REASON, OBJECT,
MESSAGE, as kube-apiserver's event printer). The ``metadata.*`` part of a selector narrows the
store query; the rest is applied here. Events are written by services only: writes answer 405.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from services.virt_api.discovery import ExtraResource
from services.virt_api.negotiation import encode_response, parse_accept
from services.virt_api.printers import NAME_DESCRIPTION
from services.virt_api.rest import is_true, parse_int
from services.virt_api.watch import stream_watch
from shared.api.vocabulary import utc_now
from shared.errors import BadRequest, MethodNotAllowed
from shared.events_recorder import EVENT_SELECTOR_FIELDS, EVENTS, EVENTS_PLURAL, field_of
from shared.human_duration import format_age_since

#: The ``/api/v1`` discovery entry (``kubectl get events`` / ``ev`` resolve through it).
EVENTS_DISCOVERY = ExtraResource("", "v1", EVENTS_PLURAL, True, ("get", "list", "watch"), kind="Event",
                                 short_names=("ev",))

_COLUMNS = (
    ("Last Seen", "string", "Time since the event was last seen"),
    ("Type", "string", "Normal or Warning"),
    ("Reason", "string", "Short machine-readable reason"),
    ("Object", "string", "The object the event is about (kind/name)"),
    ("Message", "string", "Human-readable description"),
)


def split_event_selector(selector: str | None) -> tuple[str | None, list[tuple[str, str, str]]]:
    """Split an Event field selector into the ``metadata.*`` part (for the store) and the Event
    terms ``(field, op, value)`` applied here. BadRequest for a malformed term or an unknown field."""
    if not selector or not selector.strip():
        return None, []
    store_terms: list[str] = []
    event_terms: list[tuple[str, str, str]] = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        op = "!=" if "!=" in part else ("==" if "==" in part else "=")
        if op not in part:
            raise BadRequest(f'invalid field selector "{selector}": "{part}" is not field=value or field!=value')
        field, value = (s.strip() for s in part.split(op, 1))
        if field.startswith("metadata."):
            store_terms.append(part)
        elif field in EVENT_SELECTOR_FIELDS:
            event_terms.append((field, "!=" if op == "!=" else "=", value))
        else:
            raise BadRequest(f'"{field}" is not a known field selector for events: metadata.name, '
                             f'metadata.namespace, {", ".join(EVENT_SELECTOR_FIELDS)}')
    return (",".join(store_terms) or None), event_terms


def is_event_selected(event: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    """Whether ``event`` passes every Event term."""
    return all((field_of(event, f) == v) == (op == "=") for f, op, v in terms)


def compute_event_table(events: list[dict[str, Any]], include_object: str, now: datetime) -> dict[str, Any]:
    """A meta.k8s.io Table of Events with kube-apiserver's event columns (plus Name first)."""
    if include_object not in ("None", "Metadata", "Object"):
        raise BadRequest(f'invalid includeObject "{include_object}": must be one of None, Metadata, Object')
    rows = []
    for ev in events:
        last = ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp")
        seen = format_age_since(last, now)
        count = int(ev.get("count") or 1)
        if count > 1:
            seen = f"{seen} (x{count})"
        inv = ev.get("involvedObject") or {}
        row: dict[str, Any] = {"cells": [(ev.get("metadata") or {}).get("name"), seen, ev.get("type", ""),
                                         ev.get("reason", ""),
                                         f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
                                         ev.get("message", "")]}
        if include_object == "Object":
            row["object"] = ev
        elif include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": ev.get("metadata") or {}}
        rows.append(row)
    columns = [{"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 1}]
    columns += [{"name": n, "type": t, "format": "", "description": d, "priority": 0} for n, t, d in _COLUMNS]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows}


def _sort_key(ev: dict[str, Any]) -> tuple[str, str]:
    return (str(ev.get("lastTimestamp") or ""), (ev.get("metadata") or {}).get("name", ""))


async def handle_events(request: web.Request, store: Any, namespace: str | None,
                        name: str | None) -> web.StreamResponse:
    """GET list/watch/one Event; 405 for other methods."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed("events are recorded by kubevirt-py's services and are read-only through virt-api")
    accept = parse_accept(request.headers.get("Accept"))
    include = request.query.get("includeObject") or "Metadata"
    now = utc_now()
    if name is not None:
        event = await store.get(EVENTS_PLURAL, namespace, name)
        if accept.table:
            table = compute_event_table([event], include, now)
            table["apiVersion"] = f"meta.k8s.io/{accept.table_version}"
            return encode_response(table)
        return encode_response(event, accept=accept)
    store_selector, terms = split_event_selector(request.query.get("fieldSelector"))
    label_selector = request.query.get("labelSelector") or None
    if is_true(request.query.get("watch")):
        watch = store.watch(EVENTS_PLURAL, namespace, resource_version=request.query.get("resourceVersion") or None,
                            label_selector=label_selector, field_selector=store_selector)

        async def selected() -> AsyncIterator[Any]:
            async for item in watch:
                if item.type == "BOOKMARK" or is_event_selected(item.object, terms):
                    yield item

        render = None
        if accept.table:
            def render(obj: dict[str, Any]) -> dict[str, Any]:
                table = compute_event_table([obj], include, utc_now())
                table["apiVersion"] = f"meta.k8s.io/{accept.table_version}"
                return table
        timeout = parse_int(request.query, "timeoutSeconds", minimum=0)
        return await stream_watch(request, selected(), timeout_seconds=timeout,
                                  allow_bookmarks=is_true(request.query.get("allowWatchBookmarks")), render=render)
    items, rv = await store.list(EVENTS_PLURAL, namespace, label_selector=label_selector, field_selector=store_selector)
    items = sorted((e for e in items if is_event_selected(e, terms)), key=_sort_key)
    if accept.table:
        table = compute_event_table(items, include, now)
        table["apiVersion"] = f"meta.k8s.io/{accept.table_version}"
        table["metadata"]["resourceVersion"] = rv
        return encode_response(table)
    return encode_response({"apiVersion": EVENTS.api_version, "kind": EVENTS.list_kind,
                            "metadata": {"resourceVersion": rv}, "items": items}, accept=accept)
