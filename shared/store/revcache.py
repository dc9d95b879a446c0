"""A small LRU of the latest encoded state this process saw per key, by revision.

A record at a given revision never changes, so when an update names ``resourceVersion`` R and the
cache holds the key's bytes at R, the update can be computed from them and sent as a CAS on R
without first reading the key: if R is still current the old state is exactly the cached one,
and if it is not the CAS fails (409) anyway. Saves one round trip on the common
get/list/watch → update path of controllers.
"""

from __future__ import annotations

from collections import OrderedDict


class RevisionCache:
    """``(bucket, key) -> (revision, value bytes)``, at most ``size`` entries (least recent out)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[int, bytes]] = OrderedDict()

    def remember(self, bucket: str, key: str, revision: int, value: bytes) -> None:
        slot = (bucket, key)
        known = self._entries.get(slot)
        if known is not None and known[0] > revision:
            return  # never replace a newer state by an older one
        self._entries[slot] = (revision, value)
        self._entries.move_to_end(slot)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, bucket: str, key: str) -> None:
        self._entries.pop((bucket, key), None)

    def at(self, bucket: str, key: str, revision: int) -> bytes | None:
        """The key's bytes if the cached state is exactly ``revision``."""
        known = self._entries.get((bucket, key))
        return known[1] if known is not None and known[0] == revision else None
