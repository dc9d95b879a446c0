"""The write edge of virt-snapshot: CAS writes of snapshots, contents and VMs, folded back into
the informer caches (read-your-writes), and Events.

Every write is ``mutate(current) -> wanted | None`` applied to the cached object and stored with
its resourceVersion (compare-and-swap); on Conflict the object is read again and ``mutate``
re-applied (a few times, then Conflict goes to the worker, which requeues), so concurrent writers
(virt-controller on VM status, virt-api on metadata) are never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from shared.api.decoding import encode_object
from shared.errors import AlreadyExists, NotFound
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.mutating_write import mutate_and_write

log = logging.getLogger(__name__)

T = TypeVar("T")
#: attempts of one write before the Conflict is left to the worker's requeue
WRITE_ATTEMPTS = 5

API_VERSIONS = {"VirtualMachineSnapshot": "snapshot.kubevirt.io/v1beta1",
                "VirtualMachineSnapshotContent": "snapshot.kubevirt.io/v1beta1",
                "VirtualMachineRestore": "snapshot.kubevirt.io/v1beta1",
                "VirtualMachine": "kubevirt.io/v1", "VirtualMachineInstance": "kubevirt.io/v1",
                "PersistentVolumeClaim": "v1"}


def as_body(obj: Any, kind: str) -> dict[str, Any]:
    """``obj`` (a Struct) as the store's dict with ``apiVersion``/``kind``."""
    return {"apiVersion": API_VERSIONS.get(kind, "v1"), "kind": kind, **encode_object(obj)}


class Writer:
    """CAS writes through ``store`` into the caches of the given informers.

    Args:
        store: ObjectStore.
        recorder: EventRecorder of component ``virt-snapshot``.
    """

    def __init__(self, store: Any, recorder: EventRecorder) -> None:
        self.store = store
        self.recorder = recorder

    async def write(self, informer: Informer[T], obj: T, mutate: Callable[[T], T | None], *,
                    status_only: bool = False, whole: bool = False) -> T | None:
        """Store ``mutate(obj)`` (``status_only``: through ``/status``; ``whole``: metadata, spec
        and status in one CAS; else metadata and spec). Returns the stored object, None when
        ``mutate`` had nothing to write or the object is gone. Raises Conflict after
        :data:`WRITE_ATTEMPTS` conflicting attempts."""
        return await mutate_and_write(self.store, informer, obj, mutate, status_only=status_only, whole=whole,
                                      attempts=WRITE_ATTEMPTS)

    async def create(self, informer: Informer[T], obj: Any, kind: str) -> T | None:
        """Create ``obj``; an existing object of that name is read instead (idempotent)."""
        body = as_body(obj, kind)
        try:
            stored = await self.store.create(informer.plural, body)
        except AlreadyExists:
            meta = body["metadata"]
            stored = await self.store.get(informer.plural, meta.get("namespace"), meta["name"])
        informer.assume(stored)
        return informer.decode(stored)

    async def delete(self, informer: Informer[T], obj: T) -> None:
        """Delete ``obj`` (finalizers make it a graceful deletion); a missing one is fine."""
        meta = getattr(obj, "metadata", None)
        if meta is None or not meta.name:
            return
        try:
            result = await self.store.delete(informer.plural, meta.namespace, meta.name)
        except NotFound:
            informer.assume_deleted(obj)
            return
        if (result.get("metadata") or {}).get("deletionTimestamp"):
            informer.assume(result)
        else:
            informer.assume_deleted(result)

    async def record(self, obj: Any, kind: str, event_type: str, reason: str, message: str) -> None:
        """An Event on ``obj`` (a Struct), best effort."""
        try:
            await self.recorder.record(as_body(obj, kind), event_type, reason, message)
        except Exception as err:  # noqa: BLE001 - events are best effort
            log.warning("event %s on %s: %s", reason, kind, err)
