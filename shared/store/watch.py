"""Turning KV records into Kubernetes watch events.

Owns :class:`WatchEvent` and the per-watch bookkeeping that decides, for every record of the
bucket's stream, which event (if any) one watcher sees: ADDED / MODIFIED / DELETED, with
selector transitions phrased as Kubernetes' watch cache does (``cacheWatcher.convertToWatchEvent``:
an object that stops matching is sent as DELETED carrying its previous state with the new
resourceVersion; one that starts matching as ADDED). It also checks continuity: each record names
the revision it replaced, so a revision dropped from history between the start revision and now is
noticed and reported as 410 Gone instead of being silently skipped.

The stream reading itself is :meth:`shared.store.consumers.StreamReader.tail`; the ObjectStore wires both.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from shared.errors import ApiError, Gone, StatusCause, Timeout
from shared.store.keys import parse_key
from shared.store.metadata import with_resource_version
from shared.store.records import KvRecord

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"


class WatchEvent:
    """One watch event as Kubernetes streams it: ``type`` ADDED|MODIFIED|DELETED|BOOKMARK and the
    object (a JSON-ready dict whose ``metadata.resourceVersion`` is the event's revision).

    An event made from a stored record may carry the record's encoded ``value`` and ``revision``
    instead of the dict: ``object`` then decodes it on first access (once), and a reader that
    wants a typed object (:class:`shared.informer.Informer`) decodes ``value`` straight into its
    Struct without the dict in between."""

    __slots__ = ("type", "_object", "value", "revision")

    def __init__(self, type: str, object: dict[str, Any] | None = None, *,  # noqa: A002 - Kubernetes' names
                 value: bytes | None = None, revision: int = 0) -> None:
        if object is None and value is None:
            raise ValueError("a WatchEvent needs an object or an encoded value")
        self.type = type
        self._object = object
        self.value = value
        self.revision = revision

    @property
    def object(self) -> dict[str, Any]:
        """The object as a JSON-ready dict (decoded from ``value`` on first access)."""
        obj = self._object
        if obj is None:
            obj = self._object = with_resource_version(decode_object(self.value or b"") or {}, self.revision)
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "object": self.object}

    def __eq__(self, other: builtins.object) -> bool:
        if not isinstance(other, WatchEvent):
            return NotImplemented
        return self.type == other.type and self.object == other.object

    __hash__ = None  # type: ignore[assignment]  # mutable object inside, as the dataclass was

    def __repr__(self) -> str:
        return f"WatchEvent(type={self.type!r}, object={self.object!r})"


def gone(requested: int, oldest: int) -> ApiError:
    """Kubernetes' 410 for a watch start that history no longer covers."""
    return Gone(f"too old resource version: {requested} ({oldest})")


#: How long a watch from a resourceVersion the bucket has not reached waits for it (kube-apiserver's
#: watch cache waits 3 s, then answers "Too large resource version").
FRESHNESS_WAIT = 3.0


def too_large(requested: int, current: int) -> ApiError:
    """504 for a resourceVersion newer than the bucket's newest, worded and caused as
    kube-apiserver's (cause ``ResourceVersionTooLarge``; clients retry after a second)."""
    return Timeout(f"Too large resource version: {requested}, current: {current}",
                   causes=[StatusCause(field="", message="Too large resource version",
                                       reason="ResourceVersionTooLarge")],
                   retry_after_seconds=1)


def decode_object(value: bytes) -> dict[str, Any] | None:
    if not value:
        return None
    obj = msgspec.json.decode(value)
    return obj if isinstance(obj, dict) else None


def _object_of(known: dict[str, Any] | WatchEvent | None) -> dict[str, Any] | None:
    return known.object if isinstance(known, WatchEvent) else known


class EventComputer:
    """Per-watch state: which keys currently match, their last matching object, and the last
    revision seen per key. ``passes(obj)`` is the selector; ``needs_previous`` says whether a
    key's match status can change over time (true only with a label selector);
    ``fetch_previous(revision)`` reads the record a change replaced when it predates the watch."""

    def __init__(self, start: int, passes: Callable[[dict[str, Any]], bool], needs_previous: bool,
                 fetch_previous: Callable[[int], Awaitable[KvRecord | None]], *,
                 selects_all: bool = False) -> None:
        self.start = start
        self.passes = passes
        self.needs_previous = needs_previous
        self.fetch_previous = fetch_previous
        #: no selector at all: every object passes, so records need not be decoded to decide
        self.selects_all = selects_all
        # key -> last matching object (with rv), or the event that carries it still encoded
        self.matched: dict[str, dict[str, Any] | WatchEvent] = {}
        self.last_seen: dict[str, int] = {}

    def remember(self, key: str, obj: dict[str, Any], revision: int) -> None:
        """Record initial state (from a list snapshot) as already seen and matching."""
        self.matched[key] = obj
        self.last_seen[key] = revision

    async def compute(self, rec: KvRecord) -> WatchEvent | None:
        """The event this record means for the watcher, or None. Raises Gone on a revision gap."""
        if rec.prev_revision >= self.start and self.last_seen.get(rec.key) != rec.prev_revision:
            raise gone(self.start - 1, rec.prev_revision)
        self.last_seen[rec.key] = rec.revision
        if self.selects_all and not rec.deleted:
            if not rec.value:
                return None
            known = rec.key in self.matched or (not rec.created and rec.prev_revision < self.start
                                                and rec.prev_revision > 0)
            event = WatchEvent(MODIFIED if known else ADDED, value=rec.value, revision=rec.revision)
            self.matched[rec.key] = event
            return event
        cur = decode_object(rec.value)
        prev_obj = _object_of(self.matched.get(rec.key))
        if rec.deleted:
            self.matched.pop(rec.key, None)
            last = cur or prev_obj
            if last is None:
                namespace, name = parse_key(rec.key)
                last = {"metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}
            was_matching = prev_obj is not None or (rec.prev_revision < self.start and self.passes(last))
            return WatchEvent(DELETED, with_resource_version(last, rec.revision)) if was_matching else None
        if cur is None:
            return None
        cur = with_resource_version(cur, rec.revision)
        cur_passes = self.passes(cur)
        if prev_obj is None and not rec.created and rec.prev_revision < self.start and rec.prev_revision:
            # first sight of this key in this watch: what did the watcher already know of it?
            if not self.needs_previous:
                prev_obj = cur if cur_passes else None
            else:
                before = await self.fetch_previous(rec.prev_revision)
                before_obj = decode_object(before.value) if before and not before.deleted else None
                if before is None:
                    before_obj = cur  # history gone: assume the match status did not change
                if before_obj is not None and self.passes(before_obj):
                    prev_obj = with_resource_version(before_obj, rec.prev_revision)
        if cur_passes:
            self.matched[rec.key] = cur
            return WatchEvent(MODIFIED if prev_obj is not None else ADDED, cur)
        if prev_obj is not None:
            self.matched.pop(rec.key, None)
            left = dict(prev_obj)
            left["metadata"] = {**prev_obj.get("metadata", {}), "resourceVersion": str(rec.revision)}
            return WatchEvent(DELETED, left)
        return None
