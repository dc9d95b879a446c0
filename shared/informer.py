"""Informer: list + watch one resource into a local cache and tell handlers what changed.

Like client-go's shared informer (``k8s.io/client-go/tools/cache``): ``list`` gives the items and
the list resourceVersion, the watch continues from exactly there; when the store answers ``Gone``
(history compacted), sends an ``ERROR`` event, or the watch breaks, the informer lists again and
reports the difference as events, so no change is lost, only merged. Objects deleted while the
watch was down arrive as deletions of their last cached state (client-go's
``DeletedFinalStateUnknown`` tombstone, here simply the old object). Handlers must be cheap and
non-blocking: controllers only enqueue keys.

Typed objects: ``Informer(store, plural, decode=VirtualMachineInstance)`` decodes every object
once, when it arrives, into that msgspec Struct of :mod:`shared.api`; handlers and getters see
Structs. ``decode=None`` keeps the store's dicts. A record that does not fit the type is logged
and ignored (as client-go drops an object its scheme cannot decode).

Read-your-writes: a controller that has just written an object tells the cache with
:meth:`Informer.assume` / :meth:`Informer.assume_deleted` / :meth:`Informer.assume_written` so
the next reconcile does not act on a stale copy (the role of KubeVirt's "expectations"). Stale
watch events (an older resourceVersion than the cached copy of the same object) are then ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar, cast, overload

import msgspec

from shared.api.decoding import FieldErrors, decode_object
from shared.api.vocabulary import object_key, split_key
from shared.errors import Gone

log = logging.getLogger(__name__)

T = TypeVar("T")

Handler = Callable[[T | None, T | None], None]
"""``handler(old, new)``: old None = added, new None = deleted."""

__all__ = ["Handler", "Informer", "WatchingStore", "decode_as", "key_of", "split_key"]


class WatchEventLike(Protocol):
    """One event of ``ObjectStore.watch`` (``shared.store.WatchEvent``)."""

    @property
    def type(self) -> str: ...

    @property
    def object(self) -> dict[str, Any]: ...


class _EncodedEvent(Protocol):
    """What a store WatchEvent may also carry: the record's encoded object and its revision."""

    value: bytes | None
    revision: int


class WatchingStore(Protocol):
    """What an informer needs from ``shared.store.ObjectStore``."""

    async def list(self, plural: str, namespace: str | None = None, *,
                   label_selector: str | None = None,
                   field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]: ...

    def watch(self, plural: str, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None,
              field_selector: str | None = None) -> AsyncIterator[WatchEventLike]: ...


# -- metadata of a dict or of a Struct with ``metadata: ObjectMeta | None`` -------------------------
def _meta_field(obj: Any, dict_name: str, attr: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        return meta.get(dict_name) if isinstance(meta, dict) else None
    meta = getattr(obj, "metadata", None)
    return getattr(meta, attr, None) if meta is not None else None


def key_of(obj: Any) -> str:
    """Cache key of a dict or an API Struct: ``namespace/name``, or ``name`` for cluster-scoped
    objects (client-go's ``MetaNamespaceKeyFunc``). Raises KeyError when it has no name."""
    name = _meta_field(obj, "name", "name")
    if not name:
        raise KeyError("object has no metadata.name")
    namespace = _meta_field(obj, "namespace", "namespace")
    return object_key(namespace, str(name))


def _rv(obj: Any) -> int:
    try:
        return int(_meta_field(obj, "resourceVersion", "resource_version") or 0)
    except (TypeError, ValueError):
        return 0


def _uid(obj: Any) -> str | None:
    uid = _meta_field(obj, "uid", "uid")
    return str(uid) if uid is not None else None


def decode_as(typ: type[T], obj: dict[str, Any]) -> T:
    """``obj`` (a stored dict) as the Struct ``typ``. Stored objects passed admission, so the
    direct ``msgspec.convert`` nearly always fits; otherwise the Kubernetes-style cleaning of
    :func:`shared.api.decoding.decode_object` (nulls dropped, numeric quantities as strings)
    is tried. Raises :class:`shared.api.decoding.FieldErrors` when it still does not fit."""
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError:
        return cast(T, decode_object(obj, typ).struct)


class Informer(Generic[T]):
    """Cache of one resource kept current by list + watch.

    Args:
        store: an ObjectStore (list/watch).
        plural: resource plural, e.g. ``virtualmachineinstances``.
        decode: the :mod:`shared.api` Struct type to decode objects into; None keeps dicts.
        namespace: restrict to one namespace (None = all).
        label_selector: restrict by labels.
        retry_delay: seconds to wait before re-listing after a broken watch.

    Cached objects are shared: handlers and callers must not mutate them.
    """

    @overload
    def __init__(self: Informer[dict[str, Any]], store: WatchingStore | None, plural: str, *,
                 decode: None = None, namespace: str | None = None, label_selector: str | None = None,
                 retry_delay: float = 0.5) -> None: ...

    @overload
    def __init__(self: Informer[T], store: WatchingStore | None, plural: str, *,
                 decode: type[T], namespace: str | None = None, label_selector: str | None = None,
                 retry_delay: float = 0.5) -> None: ...

    def __init__(self, store: WatchingStore | None, plural: str, *, decode: type[Any] | None = None,
                 namespace: str | None = None, label_selector: str | None = None,
                 retry_delay: float = 0.5) -> None:
        self.store = store
        self.plural = plural
        self.decode_type = decode
        self._decoder: msgspec.json.Decoder[Any] | None = msgspec.json.Decoder(decode) if decode else None
        self.namespace = namespace
        self.label_selector = label_selector
        self.retry_delay = retry_delay
        self._cache: dict[str, T] = {}
        self._tombstones: dict[str, str | None] = {}  # key -> uid we deleted, until the watch agrees
        self._handlers: list[Handler[T]] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None
        self.relists = 0

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, obj: Any) -> T | None:
        """``obj`` in this informer's form: a store dict decoded into the Struct type (a value
        already of that type passes through); None (logged) when it does not fit."""
        typ = self.decode_type
        if typ is None or not isinstance(obj, dict):
            return cast(T, obj)
        try:
            return cast(T, decode_as(typ, obj))
        except FieldErrors as err:
            log.warning("informer %s: ignoring %s that does not decode: %s", self.plural,
                        (obj.get("metadata") or {}).get("name"), err)
            return None

    def _decode_value(self, decoder: msgspec.json.Decoder[Any], event: _EncodedEvent) -> T | None:
        """The event's encoded object decoded straight into the Struct, its resourceVersion set
        to the event's revision; None when it needs the cleaning of :func:`decode_as` (then the
        caller takes the dict path)."""
        try:
            obj = decoder.decode(event.value or b"")
        except msgspec.DecodeError:
            return None
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return None
        meta.resource_version = str(event.revision)
        return cast(T, obj)

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> T | None:
        """The cached object for ``key`` (do not mutate it)."""
        return self._cache.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> T | None:
        """The cached object ``namespace/name`` (``name`` alone for cluster-scoped ones)."""
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[T]:
        """All cached objects."""
        return list(self._cache.values())

    def keys(self) -> list[str]:
        """All cache keys."""
        return list(self._cache.keys())

    def __len__(self) -> int:
        return len(self._cache)

    def has_synced(self) -> bool:
        """Whether the first complete list has been applied."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first complete list (TimeoutError after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def add_handler(self, handler: Handler[T]) -> None:
        """Call ``handler(old, new)`` on every change (old None = added, new None = deleted)."""
        self._handlers.append(handler)

    # -- read-your-writes --------------------------------------------------------------------
    def assume(self, obj: T | dict[str, Any]) -> None:
        """Put an object this process has just written into the cache (newer wins) and tell the
        handlers, as the watch would a moment later (its event is then skipped). A dict is
        decoded for a typed informer."""
        typed = self.decode(obj)
        if typed is None:
            return
        key = key_of(typed)
        old = self._cache.get(key)
        if old is not None and _uid(old) == _uid(typed) and _rv(old) > _rv(typed):
            return
        self._tombstones.pop(key, None)
        self._cache[key] = typed
        self._notify(old, typed)

    def assume_deleted(self, obj: T | dict[str, Any]) -> None:
        """Drop an object this process has just removed; late events of it are ignored."""
        key = key_of(obj)
        cached = self._cache.get(key)
        if cached is not None and _uid(cached) != _uid(obj):
            return  # a newer object of the same name is already cached
        self._tombstones[key] = _uid(obj)
        if cached is not None:
            del self._cache[key]
            self._notify(cached, None)

    def assume_written(self, before: T | dict[str, Any], stored: T | dict[str, Any] | None) -> None:
        """Fold the answer of a write into the cache: ``stored`` None (the object was already gone)
        or a stored object marked for deletion with no finalizers left (the store removed it)
        drop ``before``; anything else is assumed as written."""
        if stored is None:
            self.assume_deleted(before)
        elif _meta_field(stored, "deletionTimestamp", "deletion_timestamp") and \
                not _meta_field(stored, "finalizers", "finalizers"):
            self.assume_deleted(stored)
        else:
            self.assume(stored)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start listing and watching in a task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.plural}")
        return self._task

    async def stop(self) -> None:
        """Cancel the list/watch task and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # its outcome is moot; a cancel of stop() itself still propagates
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._list()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("informer %s: watch expired, re-listing", self.plural)
            except Exception as err:  # noqa: BLE001 - any failure (connection loss): list again after a pause
                log.warning("informer %s: %s; re-listing in %.1fs", self.plural, err, self.retry_delay)
                await asyncio.sleep(self.retry_delay)
            self.relists += 1

    def _store(self) -> WatchingStore:
        if self.store is None:
            raise RuntimeError(f"informer {self.plural} has no store")
        return self.store

    async def _list(self) -> None:
        items, rv = await self._store().list(self.plural, self.namespace, label_selector=self.label_selector)
        self.replace(items, rv)

    def replace(self, items: list[dict[str, Any]] | list[T], resource_version: str | None) -> None:
        """Replace the cache by a complete list and notify the difference (client-go's
        ``Replace``): added/changed objects as adds/updates, missing ones as deletions of their
        last cached state. Public for tests."""
        fresh: dict[str, T] = {}
        for raw in items:
            obj = self.decode(raw)
            if obj is not None:
                fresh[key_of(obj)] = obj
        old_cache = self._cache
        self._cache = dict(fresh)
        self._tombstones.clear()
        self.resource_version = resource_version
        for key, obj in fresh.items():
            old = old_cache.get(key)
            if old is None or _rv(old) != _rv(obj) or _uid(old) != _uid(obj):
                self._notify(old, obj)
        for key, old in old_cache.items():
            if key not in fresh:
                self._notify(old, None)
        self._synced.set()

    async def _watch(self) -> None:
        watch = self._store().watch(self.plural, self.namespace, resource_version=self.resource_version,
                                    label_selector=self.label_selector)
        decoder = self._decoder
        async for event in watch:
            etype = event.type
            if decoder is not None and etype != "DELETED" and getattr(event, "value", None):
                typed = self._decode_value(decoder, cast(_EncodedEvent, event))
                if typed is not None:
                    self.apply_event(etype, typed)
                    self.resource_version = str(cast(_EncodedEvent, event).revision)
                    continue
            raw = event.object
            if etype == "BOOKMARK":
                self.resource_version = _meta_field(raw, "resourceVersion", "") or self.resource_version
                continue
            if etype == "ERROR":
                raise Gone(str(raw))
            self.apply_event(etype, raw)
            rv = _meta_field(raw, "resourceVersion", "")
            if rv and etype != "DELETED":
                self.resource_version = rv
        raise ConnectionError(f"watch of {self.plural} ended")

    def apply_event(self, etype: str, raw: T | dict[str, Any]) -> None:
        """Apply one watch event (``ADDED``/``MODIFIED``/``DELETED``) to the cache and notify
        handlers (public for tests)."""
        if etype == "DELETED":
            key = key_of(raw)
            uid = _uid(raw)
            if self._tombstones.get(key, object()) == uid:
                del self._tombstones[key]
            cached = self._cache.get(key)
            if cached is None or _uid(cached) != uid:
                return
            del self._cache[key]
            self._notify(cached, None)
            return
        key = key_of(raw)
        uid = _uid(raw)
        if key in self._tombstones and self._tombstones[key] == uid:
            return  # late event of an object we already removed
        cached = self._cache.get(key)
        if cached is not None and _uid(cached) == uid and _rv(cached) >= _rv(raw):
            return  # stale, or our own write already assumed: no decode needed
        obj = self.decode(raw)
        if obj is None:
            return
        self._cache[key] = obj
        self._notify(cached, obj)

    def _notify(self, old: T | None, new: T | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("informer %s: handler failed", self.plural)
