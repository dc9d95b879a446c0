"""Ownership between objects: the owner index, cascading deletion and garbage collection.

Owns the index bucket ``<prefix>_owners`` (key ``<owner-uid>.<plural>.<namespace>.<name>``, empty
value), written before a dependent so a hint may be stale but is never missing; every hint is
checked against the dependent's current ``ownerReferences``. Deleting an owner deletes its
dependents (Background/Foreground) or strips the reference (Orphan); a dependent that still has
another owner only loses the reference (Kubernetes' garbage collector keeps it). Cascades run
inside the deleting call; :meth:`Ownership.collect_garbage` finishes one a crashed process left
half done. Object semantics are :class:`shared.store.objectstore.ObjectStore`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.errors import Conflict, NotFound
from shared.store import metadata as md
from shared.store.keys import compute_key, decode_token, encode_token, parse_key
from shared.store.records import WrongLastRevision

if TYPE_CHECKING:
    from shared.store.objectstore import ObjectStore

OWNERS = "_owners"  # the index's plural (bucket <prefix>_owners)


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

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

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

    async def _dependents(self, uid: str) -> list[tuple[str, str | None, str]]:
        """(plural, namespace, name) of every object the index says ``uid`` owns (hints)."""
        bucket = await self.store.ensure_bucket(OWNERS)
        records, _ = await self.store.kv.snapshot(bucket, f"$KV.{bucket}.{encode_token(uid)}.>")
        out = []
        for rec in records:
            if rec.deleted:
                continue
            _, plural_token, rest = rec.key.split(".", 2)
            namespace, name = parse_key(rest)
            out.append((decode_token(plural_token), namespace, name))
        return out

    async def _forget_dependent_hints(self, uid: str) -> None:
        bucket = await self.store.ensure_bucket(OWNERS)
        records, _ = await self.store.kv.snapshot(bucket, f"$KV.{bucket}.{encode_token(uid)}.>")
        for rec in records:
            if not rec.deleted:
                try:
                    await self.store.kv.write(bucket, rec.key, b"", expected=rec.revision, delete=True)
                except WrongLastRevision:
                    pass  # re-indexed meanwhile: keep it

    async def delete_dependents(self, uid: str) -> None:
        """Delete objects owned by ``uid``; one with other owners only loses this reference
        (the garbage collector keeps objects that still have an owner)."""
        for plural, namespace, name in await self._dependents(uid):
            try:
                dependent = await self.store.get(plural, namespace, name)
            except NotFound:
                continue
            if uid not in md.owner_uids(dependent):
                continue
            try:
                if set(md.owner_uids(dependent)) - {uid}:
                    await self._drop_owner(plural, dependent, uid)
                else:
                    await self.store.delete(plural, namespace, name, precondition_rv=None)
            except (NotFound, Conflict):
                continue  # deleted or changed concurrently; whoever did it owns the outcome
        await self._forget_dependent_hints(uid)

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
