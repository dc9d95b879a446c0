"""An LRU of the latest encoded state this process saw per key, by revision.

A record at a given revision never changes, so when an update names ``resourceVersion`` R and the
cache holds the key's bytes at R, the update can be computed from them and sent as a CAS on R
without first reading the key: if R is still current the old state is exactly the cached one,
and if it is not the CAS fails (409) anyway. Saves one round trip on the common
get/list/watch → update path of controllers.

Sized for every object a controller has in flight (a burst of thousands of VMIs: with fewer
entries than keys being written, each CAS write is preceded by a re-read), bounded by entries
and by the bytes held.
"""

from __future__ import annotations

from collections import OrderedDict


#: default bounds: entries, and bytes of values held
DEFAULT_SIZE = 65536
DEFAULT_MAX_BYTES = 128 * 1024 * 1024


class RevisionCache:
    """``(bucket, key) -> (revision, value bytes)``, at most ``size`` entries and ``max_bytes``
    bytes of values (least recently remembered out)."""

    def __init__(self, size: int = DEFAULT_SIZE, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, str], tuple[int, bytes]] = OrderedDict()

    def remember(self, bucket: str, key: str, revision: int, value: bytes) -> None:
        """Note ``key``'s bytes at ``revision`` (ignored when a newer revision is known)."""
        slot = (bucket, key)
        entries = self._entries
        known = entries.get(slot)
        if known is not None:
            if known[0] > revision:
                return  # never replace a newer state by an older one
            self.bytes -= len(known[1])
        entries[slot] = (revision, value)
        entries.move_to_end(slot)
        self.bytes += len(value)
        while len(entries) > self.size or (self.bytes > self.max_bytes and len(entries) > 1):
            _, (_, dropped) = entries.popitem(last=False)
            self.bytes -= len(dropped)

    def forget(self, bucket: str, key: str) -> None:
        """Drop what is known of ``key``."""
        known = self._entries.pop((bucket, key), None)
        if known is not None:
            self.bytes -= len(known[1])

    def at(self, bucket: str, key: str, revision: int) -> bytes | None:
        """The key's bytes if the cached state is exactly ``revision``."""
        known = self._entries.get((bucket, key))
        return known[1] if known is not None and known[0] == revision else None
