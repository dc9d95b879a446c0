"""Kubernetes-style core v1 ``Event`` objects, recorded by the services on state transitions.

Owns: the Event shape (``reason``, ``message``, ``type`` Normal|Warning, ``involvedObject``,
``count``, ``firstTimestamp``, ``lastTimestamp``, ``source.component``/``host``; k8s.io/api
core/v1 ``Event``), its resource registration (:data:`EVENTS`, core group, namespaced, stored in
the ObjectStore as resource ``events``), and :class:`EventRecorder`, which dedupes like
client-go's event correlator: a repeat of the same (involvedObject uid, reason, message, type)
bumps ``count`` and ``lastTimestamp`` of the existing Event instead of adding one.

Callers record only on transitions (a phase change, a create, a delete), never per reconcile.
Recording never fails the caller: store errors are logged and dropped (events are best effort
in Kubernetes too).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from shared.api.resources import ResourceInfo
from shared.errors import Conflict, NotFound

log = logging.getLogger("kubevirt.events")

NORMAL = "Normal"
WARNING = "Warning"
EVENTS_PLURAL = "events"

#: The registry entry of core v1 Events (not in shared.api.resources.RESOURCES: Events are served
#: by virt-api's events route and written only by services, never admitted as user objects).
EVENTS = ResourceInfo(
    group="", version="v1", kind="Event", plural=EVENTS_PLURAL, singular="event", short_names=("ev",),
    namespaced=True, list_kind="EventList", categories=(), type=None, subresources=(),
)

#: Field selectors Events accept beyond metadata.* (what ``kubectl describe`` sends).
EVENT_SELECTOR_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
    "reason", "type", "source",
)


def format_event_time(now: datetime) -> str:
    """RFC 3339 seconds precision in UTC (``firstTimestamp``/``lastTimestamp`` are meta/v1 Time)."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compute_involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference of ``obj`` (kind, namespace, name, uid, apiVersion, resourceVersion)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": meta.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}


def compute_event(involved: dict[str, Any], event_type: str, reason: str, message: str, *, component: str,
                  host: str | None, now: datetime) -> dict[str, Any]:
    """A new Event for ``involved`` (an ObjectReference). Named as client-go names it,
    ``<involved name>.<hex of the Unix time in ns>``, so one object's events list in time order
    (the store lists by name). Raises ValueError for a type other than Normal/Warning."""
    if event_type not in (NORMAL, WARNING):
        raise ValueError(f"event type must be Normal or Warning, not {event_type!r}")
    stamp = format_event_time(now)
    source: dict[str, str] = {"component": component}
    if host:
        source["host"] = host
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{involved.get('name', 'object')}.{_next_stamp():x}",
                     "namespace": involved.get("namespace") or "default"},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": event_type,
        "source": source, "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
        "reportingComponent": component, "reportingInstance": host or "",
    }


_last_stamp = 0


def _next_stamp() -> int:
    """Unix time in ns, strictly increasing within this process (two events in one ns differ)."""
    global _last_stamp
    _last_stamp = max(time.time_ns(), _last_stamp + 1)
    return _last_stamp


def compute_dedupe_key(involved: dict[str, Any], event_type: str, reason: str, message: str) -> tuple[str, ...]:
    """What makes two events "the same" (client-go's aggregation key minus the source)."""
    return (involved.get("uid") or f"{involved.get('namespace')}/{involved.get('kind')}/{involved.get('name')}",
            event_type, reason, message)


def field_of(event: dict[str, Any], path: str) -> str:
    """Value of a dotted field selector path on an Event ("" when absent; ``source`` = component)."""
    if path == "source":
        return str((event.get("source") or {}).get("component") or "")
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    return "" if node is None else str(node)


class EventRecorder:
    """Writes Events for one component (``virt-controller``, ``virt-handler``, ...).

    Args:
        store: ObjectStore (``create``/``update`` of resource ``events``).
        component: ``source.component``.
        host: ``source.host`` (the node name for handlers), optional.
        clock: callable returning an aware datetime (tests pin it).
    """

    def __init__(self, store: Any, component: str, *, host: str | None = None,
                 clock: Any = None) -> None:
        self.store = store
        self.component = component
        self.host = host
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._seen: dict[tuple[str, ...], dict[str, Any]] = {}

    async def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> dict[str, Any] | None:
        """Record one event about ``obj`` (a stored object with kind and metadata.uid). Returns
        the stored Event, or None when the store refused it (logged, never raised)."""
        involved = compute_involved_object(obj)
        key = compute_dedupe_key(involved, event_type, reason, message)
        now = self.clock()
        try:
            previous = self._seen.get(key)
            if previous is not None:
                stored = await self._bump(previous, now)
                if stored is not None:
                    self._seen[key] = stored
                    return stored
            event = compute_event(involved, event_type, reason, message, component=self.component,
                                  host=self.host, now=now)
            created: dict[str, Any] = await self.store.create(EVENTS_PLURAL, event)
            stored = created
        except Exception as err:  # noqa: BLE001 - best effort: a closed store or bus must not fail the caller
            log.warning("event %s %s on %s/%s not recorded: %s", event_type, reason,
                        involved.get("namespace"), involved.get("name"), err)
            return None
        self._seen[key] = stored
        if len(self._seen) > 4096:  # bounded memory: forget the oldest correlations
            for old in list(self._seen)[:1024]:
                del self._seen[old]
        return stored

    async def _bump(self, previous: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Count one more occurrence of ``previous``; None when it is gone (then a new one is made)."""
        meta = previous["metadata"]
        for _ in range(3):
            try:
                current = await self.store.get(EVENTS_PLURAL, meta.get("namespace"), meta["name"])
                bumped = {**current, "count": int(current.get("count") or 1) + 1,
                          "lastTimestamp": format_event_time(now)}
                updated: dict[str, Any] = await self.store.update(EVENTS_PLURAL, bumped, has_status_subresource=False)
                return updated
            except NotFound:
                return None
            except Conflict:
                continue
        return None
