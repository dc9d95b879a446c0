"""Read-modify-write of one typed object with a compare-and-swap, as client-go's
``retry.RetryOnConflict`` around a Get/Update: ``mutate`` is applied to the cached object, and on
``409 Conflict`` to the freshly read one, a bounded number of times. The written (or re-read)
object is folded into the informer's cache (read-your-writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shared.api.decoding import encode_object
from shared.errors import Conflict, NotFound
from shared.informer import Informer

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5


async def mutate_and_write(store: Any, informer: Informer[T], obj: T, mutate: Callable[[T], T | None], *,
                           status_only: bool = False, whole: bool = False,
                           attempts: int = DEFAULT_ATTEMPTS) -> T | None:
    """Store ``mutate(obj)`` in ``informer``'s resource.

    ``status_only``: through the ``/status`` subresource (only the status is taken); ``whole``:
    metadata, spec and status in one CAS; otherwise metadata and spec (the stored status kept).
    ``mutate`` returns the object to write, or None when there is nothing to write. Returns the
    stored object decoded, or None when nothing was written or the object is gone (404). Raises
    ``shared.errors.Conflict`` after ``attempts`` conflicting writes."""
    plural = informer.plural
    current: T | None = obj
    for _ in range(attempts):
        assert current is not None
        wanted = mutate(current)
        if wanted is None:
            return None
        body = encode_object(wanted)
        try:
            if status_only:
                stored = await store.update(plural, body, subresource="status")
            else:
                stored = await store.update(plural, body, has_status_subresource=not whole)
        except NotFound:
            informer.assume_deleted(current)
            return None
        except Conflict:
            meta = body.get("metadata") or {}
            try:
                fresh = await store.get(plural, meta.get("namespace"), meta.get("name") or "")
            except NotFound:
                informer.assume_deleted(current)
                return None
            informer.assume(fresh)
            current = informer.decode(fresh)
            if current is None:
                return None
            continue
        informer.assume_written(current, stored)
        return informer.decode(stored)
    raise Conflict(f"{plural}: still conflicting after {attempts} attempts")
