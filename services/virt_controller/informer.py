"""Informer: list + watch one resource into a local cache and tell handlers what changed.

Like client-go's shared informer: ``list`` gives the items and the list resourceVersion, the
watch continues from exactly there; when the store answers ``Gone`` (history compacted) or the
watch breaks, the informer lists again and reports the difference as events, so no change is
lost, only merged. Handlers must be cheap and non-blocking: controllers only enqueue keys.

Read-your-writes: a controller that has just written an object tells the cache with
:meth:`Informer.assume` / :meth:`Informer.assume_deleted` so the next reconcile does not act on
a stale copy (the role of KubeVirt's "expectations"). Stale watch events (an older
resourceVersion than the cached copy of the same object) are then ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Protocol

from shared.errors import Gone

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]


class WatchingStore(Protocol):
    """What an informer needs from ``shared.store.ObjectStore``."""

    async def list(self, plural: str, namespace: str | None = None, *,
                   label_selector: str | None = None,
                   field_selector: str | None = None) -> tuple[list[dict], str]: ...

    def watch(self, plural: str, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None): ...


def object_key(obj: dict[str, Any]) -> str:
    """Cache key: ``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    """``"ns/name"`` -> ``("ns", "name")``; ``"name"`` -> ``(None, "name")``."""
    if "/" in key:
        namespace, name = key.split("/", 1)
        return namespace, name
    return None, key


def _rv(obj: dict[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _uid(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("uid")


class Informer:
    """Cache of one resource kept current by list + watch.

    Args:
        store: an ObjectStore (list/watch).
        plural: resource plural, e.g. ``virtualmachineinstances``.
        namespace: restrict to one namespace (None = all).
        label_selector: restrict by labels.
        retry_delay: seconds to wait before re-listing after a broken watch.
    """

    def __init__(self, store: WatchingStore, plural: str, *, namespace: str | None = None,
                 label_selector: str | None = None, retry_delay: float = 0.5) -> None:
        self.store = store
        self.plural = plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.retry_delay = retry_delay
        self._cache: dict[str, dict[str, Any]] = {}
        self._tombstones: dict[str, str | None] = {}  # key -> uid we deleted, until the watch agrees
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None
        self.relists = 0

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The cached object for ``key`` (do not mutate it)."""
        return self._cache.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[dict[str, Any]]:
        """All cached objects."""
        return list(self._cache.values())

    def keys(self) -> list[str]:
        return list(self._cache.keys())

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first complete list."""
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler(old, new)`` on every change (old None = added, new None = deleted)."""
        self._handlers.append(handler)

    # -- read-your-writes --------------------------------------------------------------------
    def assume(self, obj: dict[str, Any]) -> None:
        """Put an object this process has just written into the cache (newer wins) and tell the
        handlers, as the watch would a moment later (its event is then skipped)."""
        key = object_key(obj)
        old = self._cache.get(key)
        if old is not None and _uid(old) == _uid(obj) and _rv(old) > _rv(obj):
            return
        self._tombstones.pop(key, None)
        self._cache[key] = obj
        self._notify(old, obj)

    def assume_deleted(self, obj: dict[str, Any]) -> None:
        """Drop an object this process has just removed; late events of it are ignored."""
        key = object_key(obj)
        cached = self._cache.get(key)
        if cached is not None and _uid(cached) != _uid(obj):
            return  # a newer object of the same name is already cached
        self._tombstones[key] = _uid(obj)
        if cached is not None:
            del self._cache[key]
            self._notify(cached, None)

    def assume_written(self, before: dict[str, Any], stored: dict[str, Any] | None) -> None:
        """Fold the answer of a write into the cache: ``stored`` None (the object was already gone)
        or a stored object marked for deletion with no finalizers left (the store removed it)
        drop ``before``; anything else is assumed as written."""
        meta = (stored or {}).get("metadata", {})
        if stored is None or (meta.get("deletionTimestamp") and not meta.get("finalizers")):
            self.assume_deleted(stored or before)
        else:
            self.assume(stored)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start listing and watching in a task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.plural}")
        return self._task

    async def stop(self) -> None:
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
            except Exception as err:  # connection loss: list again after a pause
                log.warning("informer %s: %s; re-listing in %.1fs", self.plural, err, self.retry_delay)
                await asyncio.sleep(self.retry_delay)
            self.relists += 1

    async def _list(self) -> None:
        items, rv = await self.store.list(self.plural, self.namespace, label_selector=self.label_selector)
        fresh = {object_key(obj): obj for obj in items}
        old_cache = self._cache
        self._cache = dict(fresh)
        self._tombstones.clear()
        self.resource_version = rv
        for key, obj in fresh.items():
            old = old_cache.get(key)
            if old is None or _rv(old) != _rv(obj) or _uid(old) != _uid(obj):
                self._notify(old, obj)
        for key, old in old_cache.items():
            if key not in fresh:
                self._notify(old, None)
        self._synced.set()

    async def _watch(self) -> None:
        watch = self.store.watch(self.plural, self.namespace, resource_version=self.resource_version,
                                 label_selector=self.label_selector)
        async for event in watch:
            etype = event.type
            obj = event.object
            if etype == "BOOKMARK":
                self.resource_version = ((obj or {}).get("metadata") or {}).get("resourceVersion") \
                    or self.resource_version
                continue
            if etype == "ERROR":
                raise Gone(str(obj))
            self.apply_event(etype, obj)
            rv = ((obj or {}).get("metadata") or {}).get("resourceVersion")
            if rv and etype != "DELETED":
                self.resource_version = rv
        raise ConnectionError(f"watch of {self.plural} ended")

    def apply_event(self, etype: str, obj: dict[str, Any]) -> None:
        """Apply one watch event to the cache and notify handlers (public for tests)."""
        key = object_key(obj)
        cached = self._cache.get(key)
        if etype == "DELETED":
            if self._tombstones.get(key, object()) == _uid(obj):
                del self._tombstones[key]
            if cached is None or _uid(cached) != _uid(obj):
                return
            del self._cache[key]
            self._notify(cached, None)
            return
        if key in self._tombstones and self._tombstones[key] == _uid(obj):
            return  # late event of an object we already removed
        if cached is not None and _uid(cached) == _uid(obj) and _rv(cached) >= _rv(obj):
            return  # stale, or our own write already assumed
        self._cache[key] = obj
        self._notify(cached, obj)

    def _notify(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("informer %s: handler failed", self.plural)
