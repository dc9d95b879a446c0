"""Ownership between objects: the owner index, cascading deletion and garbage collection.

Owns the index bucket ``<prefix>_owners`` (key ``<owner-uid>.<plural>.<namespace>.<name>``, empty
value), written before a dependent so a hint may be stale but is never missing; every hint is
checked against the dependent's current ``ownerReferences``. Deleting an owner deletes its
dependents (Background/Foreground) or strips the reference (Orphan); a dependent that still has
another owner only loses the reference (Kubernetes' garbage collector keeps it).

Cascades run inside the deleting call, under the caller's NATS user, as far as that user may
write (:func:`compute_cascade_action`): a dependent in a bucket it may not write stays, with its
index hint, for :meth:`Ownership.collect_garbage` — the job of Kubernetes' garbage collector, run
by virt-api's store maintenance — which also finishes cascades a crashed process left half done.
Object semantics are :class:`shared.store.objectstore.ObjectStore`'s.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.errors import Conflict, Forbidden, NotFound
from shared.store import metadata as md
from shared.store.keys import compute_key, decode_token, encode_token, parse_key
from shared.store.records import WrongLastRevision

if TYPE_CHECKING:
    from shared.store.objectstore import ObjectStore

log = logging.getLogger("kubevirt.store.ownership")

OWNERS = "_owners"  # the index's plural (bucket <prefix>_owners)
_LOGGED_LIMIT = 4096  # dependents remembered as already logged (then the memory starts over)

#: (plural, namespace, name) of an object.
ObjectRef = tuple[str, str | None, str]


class CascadeAction(enum.Enum):
    """What an inline cascade does with one dependent of a removed owner."""

    NOTHING = "nothing"  # it no longer refers to the owner
    DELETE = "delete"  # the owner was its only owner
    DROP_REFERENCE = "drop-reference"  # it has other owners: only this reference goes
    LEAVE_TO_COLLECTOR = "leave-to-collector"  # the caller may not write it: the collector will


def compute_cascade_action(plural: str, dependent: dict[str, Any], owner_uid: str,
                           writable: frozenset[str] | None) -> CascadeAction:
    """The cascade's decision for ``dependent`` (an object of ``plural``) when its owner
    ``owner_uid`` is gone. ``writable`` = the plurals the caller's NATS user may write (None:
    all; :func:`shared.nats_auth.compute_writable_plurals`): a dependent elsewhere is left, with
    its index hint, to :meth:`Ownership.collect_garbage`, as Kubernetes leaves dependents to the
    garbage collector instead of the deleting client — asking NATS anyway would only be refused
    (and logged as a permissions violation). A dependent with other owners only loses the
    reference (Kubernetes' garbage collector: an object with a live owner stays)."""
    owners = md.owner_uids(dependent)
    if owner_uid not in owners:
        return CascadeAction.NOTHING
    if writable is not None and plural not in writable:
        return CascadeAction.LEAVE_TO_COLLECTOR
    if set(owners) - {owner_uid}:
        return CascadeAction.DROP_REFERENCE
    return CascadeAction.DELETE


def _resource_of(api_version: str, kind: str) -> tuple[str | None, bool]:
    """(plural, namespaced) of an ownerReference's kind, (None, False) when unknown."""
    try:
        from shared.api.resources import (
            resource_for_kind,  # owned by the API-types helper
        )
    except ImportError:
        return None, False
    try:
        res = resource_for_kind(api_version, kind)
    except NotFound:
        return None, False
    return res.plural, res.namespaced


class Ownership:
    """Owner index and cascades of one :class:`ObjectStore` (it calls back into the store's
    get/update/delete, so a cascade applies the same rules as a user's request)."""

    def __init__(self, store: ObjectStore, writable: frozenset[str] | None = None) -> None:
        self.store = store
        self.writable = writable
        self._logged: set[tuple[str, ObjectRef]] = set()

    async def index(self, plural: str, namespace: str | None, name: str, stored: dict[str, Any],
                    already: Sequence[str] = ()) -> None:
        """Record ``stored``'s owners in the index (before the object itself is written);
        ``already`` are owners indexed by an earlier write."""
        uids = [uid for uid in md.owner_uids(stored) if uid not in already]
        if not uids:
            return
        bucket = await self.store.ensure_bucket(OWNERS)
        target = f"{encode_token(plural)}.{compute_key(namespace, name)}"
        for uid in uids:
            await self.store.kv.write(bucket, f"{encode_token(uid)}.{target}", b"", expected=None)

    async def _hints(self, uid: str) -> list[tuple[str, int, ObjectRef]]:
        """(hint key, hint revision, dependent) of every object the index says ``uid`` owns."""
        bucket = await self.store.ensure_bucket(OWNERS)
        records, _ = await self.store.kv.snapshot(bucket, f"$KV.{bucket}.{encode_token(uid)}.>")
        out = []
        for rec in records:
            if rec.deleted:
                continue
            _, plural_token, rest = rec.key.split(".", 2)
            namespace, name = parse_key(rest)
            out.append((rec.key, rec.revision, (decode_token(plural_token), namespace, name)))
        return out

    async def _dependents(self, uid: str) -> list[ObjectRef]:
        """(plural, namespace, name) of every object the index says ``uid`` owns (hints)."""
        return [ref for _, _, ref in await self._hints(uid)]

    async def _forget_dependent_hints(self, uid: str, keep: frozenset[ObjectRef] = frozenset()) -> None:
        """Delete ``uid``'s hints except those of ``keep`` (dependents left to the collector)."""
        bucket = await self.store.ensure_bucket(OWNERS)
        for key, revision, ref in await self._hints(uid):
            if ref in keep:
                continue
            try:
                await self.store.kv.write(bucket, key, b"", expected=revision, delete=True)
            except WrongLastRevision:
                pass  # re-indexed meanwhile: keep it

    async def delete_dependents(self, uid: str) -> None:
        """Delete objects owned by ``uid``; one with other owners only loses this reference
        (the garbage collector keeps objects that still have an owner); one the caller may not
        write (:func:`compute_cascade_action`, or NATS refused it: Forbidden) is left to
        :meth:`collect_garbage` with its hint. Never raises for a dependent NotFound, Conflict
        or Forbidden: the owner's deletion has happened and stands."""
        left: set[ObjectRef] = set()
        for plural, namespace, name in await self._dependents(uid):
            ref = (plural, namespace, name)
            try:
                dependent = await self.store.get(plural, namespace, name)
            except NotFound:
                continue
            action = compute_cascade_action(plural, dependent, uid, self.writable)
            try:
                if action is CascadeAction.DROP_REFERENCE:
                    await self._drop_owner(plural, dependent, uid)
                elif action is CascadeAction.DELETE:
                    await self.store.delete(plural, namespace, name, precondition_rv=None)
            except (NotFound, Conflict):
                continue  # deleted or changed concurrently; whoever did it owns the outcome
            except Forbidden:
                action = CascadeAction.LEAVE_TO_COLLECTOR  # our idea of the user's permissions was wrong
            if action is CascadeAction.LEAVE_TO_COLLECTOR:
                left.add(ref)
                self._log_left(uid, ref)
        await self._forget_dependent_hints(uid, keep=frozenset(left))

    def _log_left(self, uid: str, ref: ObjectRef) -> None:
        """Say once per dependent (and owner) that the collector will delete it."""
        if (uid, ref) in self._logged:
            return
        if len(self._logged) >= _LOGGED_LIMIT:
            self._logged.clear()
        self._logged.add((uid, ref))
        plural, namespace, name = ref
        log.info("dependent %s %s/%s of removed owner %s left to the garbage collector "
                 "(this NATS user may not write %s)", plural, namespace or "", name, uid, plural)

    async def collect_garbage(self) -> int:
        """Finish cascades a crashed process left half done: every indexed dependent whose owner
        (located through its ownerReference's apiVersion/kind, see shared.api.resources) no
        longer exists with that uid is deleted, or only loses the reference when it has other
        owners — the job of Kubernetes' garbage collector. Owners of unknown kinds are left
        alone. Returns how many owners were found gone."""
        bucket = await self.store.ensure_bucket(OWNERS)
        records, _ = await self.store.kv.snapshot(bucket, f"$KV.{bucket}.>")
        owner_tokens = {r.key.split(".", 1)[0] for r in records if not r.deleted}
        collected = 0
        for token in sorted(owner_tokens):
            uid = decode_token(token)
            if await self._is_owner_gone(uid):
                await self.delete_dependents(uid)
                collected += 1
        return collected

    async def _is_owner_gone(self, uid: str) -> bool:
        """Look at one dependent's reference to ``uid``; True when that owner object is gone."""
        for plural, namespace, name in await self._dependents(uid):
            try:
                dependent = await self.store.get(plural, namespace, name)
            except NotFound:
                continue
            ref = next((r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") == uid), None)
            if ref is None:
                continue
            owner_plural, owner_namespaced = _resource_of(ref.get("apiVersion", ""), ref.get("kind", ""))
            if owner_plural is None:
                return False
            try:
                owner = await self.store.get(owner_plural, namespace if owner_namespaced else None, ref.get("name", ""))
            except NotFound:
                return True
            return bool(owner["metadata"].get("uid") != uid)
        # no live dependent refers to it: only stale hints are left
        await self._forget_dependent_hints(uid)
        return False

    async def release_dependents(self, uid: str) -> None:
        """Orphan: remove the ownerReference to ``uid`` from every dependent."""
        for plural, namespace, name in await self._dependents(uid):
            try:
                dependent = await self.store.get(plural, namespace, name)
                if uid in md.owner_uids(dependent):
                    await self._drop_owner(plural, dependent, uid)
            except NotFound:
                continue
        await self._forget_dependent_hints(uid)

    async def _drop_owner(self, plural: str, dependent: dict[str, Any], uid: str) -> None:
        while True:
            try:
                await self.store.update(plural, md.compute_without_owner(dependent, uid), has_status_subresource=False)
                return
            except Conflict:
                meta = dependent["metadata"]
                dependent = await self.store.get(plural, meta.get("namespace"), meta["name"])
                if uid not in md.owner_uids(dependent):
                    return
