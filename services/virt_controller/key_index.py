"""An index of an informer's cache: keys of the cached objects grouped by one value each
(the uid of their controller, the node they run on), kept current by an informer handler.

client-go's ``cache.Indexer`` for the lookups a reconcile makes per event (the VMIs of a replica
set, the VMIs of a node, the VMs of a pool): answering them from the index costs the size of the
answer, not a scan of every cached object, so a controller's CPU per object does not grow with
the number of objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from shared.informer import key_of

T = TypeVar("T")

__all__ = ["KeyIndex"]


class KeyIndex(Generic[T]):
    """Keys of ``informer``'s objects by ``index_of(obj)`` (None = not indexed).

    Register it before any handler that reads it: it updates on every add, update and delete
    the informer reports (relists included), so it always matches the cache.
    """

    def __init__(self, informer: Any, index_of: Callable[[T], str | None]) -> None:
        self._index_of = index_of
        self._keys: dict[str, set[str]] = {}
        informer.add_handler(self._on_change)

    def _on_change(self, old: T | None, new: T | None) -> None:
        old_value = self._index_of(old) if old is not None else None
        new_value = self._index_of(new) if new is not None else None
        if old is not None and new is not None and old_value == new_value:
            return
        if old is not None and old_value is not None:
            keys = self._keys.get(old_value)
            if keys is not None:
                keys.discard(key_of(old))
                if not keys:
                    del self._keys[old_value]
        if new is not None and new_value is not None:
            self._keys.setdefault(new_value, set()).add(key_of(new))

    def keys(self, value: str) -> list[str]:
        """The keys indexed under ``value`` (a copy; sorted, so passes are deterministic)."""
        return sorted(self._keys.get(value, ()))

    def values(self) -> list[str]:
        """Every value that has at least one key."""
        return list(self._keys)
