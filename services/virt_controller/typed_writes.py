"""The write edge of the typed controllers: Structs out to the store, stored dicts back in.

Reconcilers work on the :mod:`shared.api` Structs their informers decode; the ObjectStore takes
and returns JSON-ready dicts. :func:`shared.api.decoding.encode_object` turns a Struct into a body;
:func:`assume_stored` decodes a store answer once
and puts it into the informer cache (read-your-writes) so the caller and the cache share it.

Lossless: every stored ``kubevirt.io`` object was pruned to its schema by virt-api's decoding
(as kube-apiserver prunes unknown fields of CRD objects), and the services write only declared
fields, so a stored object encodes back unchanged from its Struct.
"""

from __future__ import annotations

from typing import Any, TypeVar


from shared.informer import Informer

T = TypeVar("T")

__all__ = ["assume_delete_result", "assume_stored"]


def assume_stored(informer: Informer[T], stored: dict[str, Any]) -> T | None:
    """Decode ``stored`` (a store answer) for ``informer`` and assume it into the cache;
    returns the typed object (None when it does not decode)."""
    typed = informer.decode(stored)
    if typed is not None:
        informer.assume(typed)
    return typed


def assume_delete_result(informer: Informer[T], before: T, result: dict[str, Any]) -> T | None:
    """Fold the answer of a delete into the cache: an object now marked for deletion (it has
    finalizers) is assumed and returned; one that is gone is dropped (returns None)."""
    if (result.get("metadata") or {}).get("deletionTimestamp"):
        return assume_stored(informer, result)
    informer.assume_deleted(result)
    return None
