"""Kubernetes object semantics on JetStream KV: the ObjectStore every service uses.

Owns create-if-absent, compare-and-swap updates, ``resourceVersion`` (= KV revision, a string),
server-set metadata (:mod:`shared.store.metadata`), graceful deletion through finalizers, cascading
deletion through ``ownerReferences``, consistent lists and resumable watches. Record access is
:mod:`shared.store.kv`, selector grammar :mod:`shared.store.selectors`, key naming
:mod:`shared.store.keys`. HTTP, admission and defaulting are virt-api's.

Owner index, cascades and garbage collection are :mod:`shared.store.ownership`; purging old
delete markers and the 410 watermark :mod:`shared.store.compaction`; the revision cache that
spares a read before a CAS update :mod:`shared.store.revcache`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from shared.bus import Bus
from shared.bus import connect as bus_connect
from shared.errors import ApiError, BadRequest, NotFound, Timeout
from shared.store import metadata as md
from shared.store.compaction import Compaction
from shared.store.keys import (
    compute_bucket,
    compute_filter_subject,
    compute_key,
    compute_key_prefix,
)
from shared.store.kv import KvLayer
from shared.store.mirror import ListMirrors
from shared.store.own_create import MAX_CREATE_ATTEMPTS, compute_create_retry
from shared.store.ownership import Ownership
from shared.store.records import KvRecord, WrongLastRevision
from shared.store.revcache import RevisionCache
from shared.store.selectors import parse_field_selector, parse_label_selector
from shared.store.watch import WatchEvent, decode_object
from shared.store.watch_stream import stream_watch

log = logging.getLogger("kubevirt.store")

_GENERATE_NAME_TRIES = 8
_PROPAGATION = ("Background", "Foreground", "Orphan")
_FROM_CACHE = -1  # prev_revision of a record rebuilt from the revision cache
_MIRROR_WAIT = 5.0  # s a list waits for the bucket mirror before reading the stream directly

_encode = msgspec.json.Encoder().encode

JsonObject = dict[str, Any]
"""An object in its JSON-ready form (what every method takes and returns)."""
JsonObjects = list[JsonObject]
Records = list[KvRecord]


def compute_compaction_due(now: float, last_compaction: float | None, compaction_interval: float) -> bool:
    """Whether a maintenance pass at ``now`` (monotonic s) compacts: the first pass does, later
    ones once ``compaction_interval`` s have passed since ``last_compaction``."""
    return last_compaction is None or now - last_compaction >= compaction_interval


class ObjectStore:
    """Kubernetes-style objects (plain dicts) in one KV bucket per resource plural.

    Create with :meth:`connect`. ``bucket_prefix`` keeps separate installations (or tests) apart
    on one server. Errors are :mod:`shared.errors` (NotFound, AlreadyExists, Conflict, Gone,
    BadRequest, Invalid, ServiceUnavailable when NATS cannot be reached within ``op_timeout`` s).
    """

    def __init__(self, bus: Bus, *, replicas: int = 1, history: int = 10, bucket_prefix: str = "kv_",
                 op_timeout: float = 10.0, owns_bus: bool = True, mirror_lists: bool = True,
                 writable_plurals: frozenset[str] | None = None) -> None:
        self.bus = bus
        self.prefix = bucket_prefix
        self.kv = KvLayer(bus, replicas=replicas, history=history, op_timeout=op_timeout)
        self._owns_bus = owns_bus
        self._seen = RevisionCache()
        self._ownership = Ownership(self, writable_plurals)
        self._compaction = Compaction(self)
        self._mirror_lists = mirror_lists
        self._mirrors = ListMirrors(self.kv)
        self._buckets: dict[str, str] = {}  # plural -> bucket name

    @classmethod
    async def connect(cls, servers: list[str], *, replicas: int = 1, history: int = 10,
                      bucket_prefix: str = "kv_", op_timeout: float = 10.0,
                      name: str = "kubevirt-store", mirror_lists: bool = True,
                      credentials: Path | None = None, tls_ca: Path | None = None,
                      writable_plurals: frozenset[str] | None = None) -> ObjectStore:
        """Connect to NATS (fails fast with ServiceUnavailable). ``history`` = revisions kept per
        key (≤ 64); ``replicas`` for buckets made by this store (1 local, 3 on a cluster);
        buckets that already exist keep the settings they were made with. ``op_timeout`` (s)
        bounds each operation including retries while NATS restarts or elects a leader.
        ``mirror_lists`` keeps an in-memory mirror of each listed bucket (:mod:`shared.store.mirror`)
        so later lists cost one round trip. ``credentials`` (a :mod:`shared.nats_auth` file) and
        ``tls_ca`` (PEM) are :func:`shared.bus.connect`'s. ``writable_plurals``: the resources
        the credentials' NATS user may write (None: all,
        :func:`shared.nats_auth.compute_writable_plurals`); a deletion's cascade leaves
        dependents of other resources to :meth:`collect_garbage` instead of being refused."""
        if not 1 <= history <= 64:
            raise ValueError("history must be between 1 and 64 (JetStream KV limit)")
        bus = await bus_connect(servers, name=name, credentials=credentials, tls_ca=tls_ca)
        return cls(bus, replicas=replicas, history=history, bucket_prefix=bucket_prefix, op_timeout=op_timeout,
                   mirror_lists=mirror_lists, writable_plurals=writable_plurals)

    async def close(self) -> None:
        """Stop the list mirrors and close the connection (when this store opened it)."""
        await self._mirrors.close()
        if self._owns_bus:
            await self.bus.close()

    # -- helpers -----------------------------------------------------------------------------
    async def ensure_bucket(self, plural: str) -> str:
        """Name of the bucket of ``plural`` (``<prefix><plural>``), created if missing."""
        bucket = self._buckets.get(plural)
        if bucket is None:
            bucket = self._buckets[plural] = compute_bucket(self.prefix, plural)
        await self.kv.ensure_bucket(bucket)
        return bucket

    def _decode(self, bucket: str, rec: KvRecord) -> dict[str, Any]:
        obj = decode_object(rec.value)
        if obj is None:
            raise ValueError(f"record {rec.key}@{rec.revision} holds no object")
        self._seen.remember(bucket, rec.key, rec.revision, rec.value)
        return md.with_resource_version(obj, rec.revision)

    async def _current(self, bucket: str, plural: str, namespace: str | None, name: str,
                       group: str | None, revision: int | None = None) -> tuple[KvRecord, dict[str, Any]]:
        """Latest record and object; with ``revision`` the locally cached state at that revision
        may stand in for it (see :mod:`shared.store.revcache`)."""
        key = compute_key(namespace, name)
        if revision is not None and (value := self._seen.at(bucket, key, revision)) is not None:
            rec = KvRecord(key, revision, _FROM_CACHE, False, value)
            return rec, self._decode(bucket, rec)
        latest = await self.kv.get(bucket, key)
        if latest is None or latest.deleted or not latest.value:
            raise md.not_found(plural, name, group)
        return latest, self._decode(bucket, latest)

    @staticmethod
    def _kind_label(obj: dict[str, Any], plural: str) -> str:
        return str(obj.get("kind") or plural)

    # -- create ------------------------------------------------------------------------------
    async def create(self, plural: str, obj: JsonObject, *, namespaced: bool = True,
                     group: str | None = None) -> JsonObject:
        """Store a new object; returns it with uid, creationTimestamp, generation 1 and
        resourceVersion. ``metadata.generateName`` fills a missing name (retrying collisions).
        Raises AlreadyExists (409) when the name is taken, Invalid (422) without a name."""
        bucket = await self.ensure_bucket(plural)
        meta = obj.get("metadata") or {}
        generate = meta.get("generateName") if not meta.get("name") else None
        kind = self._kind_label(obj, plural)
        for _ in range(_GENERATE_NAME_TRIES if generate else 1):
            candidate = obj
            if generate:
                candidate = {**obj, "metadata": {**meta, "name": md.compute_generated_name(generate)}}
            stored = md.compute_created(candidate, namespaced=namespaced, kind_label=kind)
            name = stored["metadata"]["name"]
            namespace = stored["metadata"].get("namespace") if namespaced else None
            try:
                return await self._create_record(bucket, plural, namespace, name, stored)
            except WrongLastRevision:
                if generate:
                    continue
                raise md.already_exists(plural, name, group) from None
        raise md.already_exists(plural, name, group)

    async def _create_record(self, bucket: str, plural: str, namespace: str | None, name: str,
                             stored: dict[str, Any]) -> JsonObject:
        """Write ``stored`` if the key holds no live object; returns the created object with its
        resourceVersion — the key's latest state when an earlier attempt of this very create
        (same ``metadata.uid``) was stored before its ack got lost (:mod:`shared.store.own_create`).
        Raises WrongLastRevision when another object holds the name."""
        key = compute_key(namespace, name)
        await self._ownership.index(plural, namespace, name, stored)
        payload = _encode(stored)
        expected = 0  # the key has no message at all; else (below) its delete marker's revision
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                revision = await self.kv.write(bucket, key, payload, expected=expected, create=True)
            except WrongLastRevision as failed:
                latest = await self.kv.get(bucket, key)
                retry = compute_create_retry(latest, stored["metadata"].get("uid") or "",
                                             stored["metadata"].get("creationTimestamp") or "",
                                             ambiguous=failed.ambiguous)
                if retry.action == "unknown":
                    raise Timeout(f"the create of {plural} {key} may or may not have been stored before NATS "
                                  f"stopped answering (the name was deleted since); get the object to find out")
                if retry.action == "ours" and latest is not None:
                    log.info("create of %s/%s: an earlier attempt was stored (uid %s), its ack was lost",
                             bucket, key, stored["metadata"].get("uid"))
                    if latest.deleted:  # created, then deleted by someone else before our retry
                        gone = decode_object(latest.value) or stored  # not cached: it is no live state
                        return md.with_resource_version(gone, latest.revision)
                    return self._decode(bucket, latest)
                if retry.action == "taken":
                    raise
                expected = retry.expected
                continue
            self._seen.remember(bucket, key, revision, payload)
            return md.with_resource_version(stored, revision)
        raise WrongLastRevision(f"{bucket}/{key}: other writers won {MAX_CREATE_ATTEMPTS} create attempts")

    # -- get / list --------------------------------------------------------------------------
    async def get(self, plural: str, namespace: str | None, name: str, *, group: str | None = None) -> JsonObject:
        """The latest state of one object. Raises NotFound (404)."""
        bucket = await self.ensure_bucket(plural)
        _, obj = await self._current(bucket, plural, namespace, name, group)
        return obj

    async def list(self, plural: str, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> tuple[JsonObjects, str]:
        """Every object (in ``namespace``, or all) matching the selectors, sorted by namespace
        and name, plus the list resourceVersion: a watch from it misses nothing and repeats
        nothing. Raises BadRequest for a malformed selector."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        bucket = await self.ensure_bucket(plural)
        ns = fields.wanted("metadata.namespace") if namespace is None else namespace
        name = fields.wanted("metadata.name")
        subject = compute_filter_subject(bucket, ns, name if ns is not None else None)
        records, revision = await self._list_records(bucket, ns, name if ns is not None else None, subject)
        items = []
        for rec in records:
            if rec.deleted or not rec.value:
                continue
            obj = self._decode(bucket, rec)
            if labels.matches(obj) and fields.matches(obj):
                items.append(obj)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return items, str(revision)

    async def _list_records(self, bucket: str, namespace: str | None, name: str | None,
                            subject: str, *, repeatable: bool = True) -> tuple[Records, int]:
        """Latest records under the filter and their revision: from the bucket's mirror once it
        has applied every write acknowledged before this call, else by a direct snapshot
        (which lists get a mirror: :class:`shared.store.mirror.ListMirrors`)."""
        mirror = self._mirrors.for_list(bucket, repeatable=repeatable) if self._mirror_lists else None
        if mirror is None:
            return await self.kv.snapshot(bucket, subject)
        _, last = await self.kv.stream_bounds(bucket)
        if not await mirror.wait_for(last, timeout=_MIRROR_WAIT):
            return await self.kv.snapshot(bucket, subject)
        # no await from here on: the records are the bucket's state at mirror.revision
        if name is not None:
            key = compute_key(namespace, name)
            entry = mirror.entries.get(key)
            found = [(key, *entry)] if entry else []
        elif namespace is not None:
            found = list(mirror.items(compute_key_prefix(namespace)))
        else:
            found = list(mirror.items(None))
        return [KvRecord(key, rev, 0, False, value) for key, rev, value in found], mirror.revision

    # -- update ------------------------------------------------------------------------------
    async def update(self, plural: str, obj: JsonObject, *, subresource: str | None = None,
                     has_status_subresource: bool = True, group: str | None = None,
                     namespaced: bool = True) -> JsonObject:
        """Replace an object. With ``metadata.resourceVersion`` set this is a compare-and-swap
        (Conflict 409 when stale; nothing written); without it the latest state is replaced.
        Returns the stored object (unchanged, same resourceVersion, when nothing changed).
        An object being deleted whose finalizers are now empty is removed (and its dependents).
        ``namespaced=False`` ignores a ``metadata.namespace`` sent for a cluster-scoped object.
        Raises NotFound, Conflict, Invalid."""
        if subresource not in (None, "status"):
            raise BadRequest(f'subresource "{subresource}" cannot be updated in the store')
        bucket = await self.ensure_bucket(plural)
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise BadRequest("metadata.name is required for an update")
        namespace = meta.get("namespace") if namespaced else None
        wanted_rv = md.parse_resource_version(meta.get("resourceVersion"), "metadata.resourceVersion")
        while True:
            rec, current = await self._current(bucket, plural, namespace, name, group, revision=wanted_rv)
            if wanted_rv is not None and wanted_rv != rec.revision:
                raise md.conflict(plural, name, group)
            old = md.stored_form(current)
            stored = md.compute_updated(old, obj, subresource=subresource,
                                        has_status_subresource=has_status_subresource,
                                        kind_label=self._kind_label(current, plural))
            if stored == old:
                if rec.prev_revision == _FROM_CACHE:
                    # nothing to write, so no CAS: confirm the cached revision is still current
                    latest, _ = await self._current(bucket, plural, namespace, name, group)
                    if latest.revision != rec.revision:
                        raise md.conflict(plural, name, group)
                return current
            try:
                if md.is_finalized(stored):
                    revision = await self._remove(bucket, plural, namespace, name, rec, stored)
                    return md.with_resource_version(stored, revision)
                await self._ownership.index(plural, namespace, name, stored, already=md.owner_uids(old))
                payload = _encode(stored)
                revision = await self.kv.write(bucket, rec.key, payload, expected=rec.revision)
            except WrongLastRevision:
                if wanted_rv is not None:
                    raise md.conflict(plural, name, group) from None
                continue  # unconditional update: re-read and apply again
            self._seen.remember(bucket, rec.key, revision, payload)
            return md.with_resource_version(stored, revision)

    # -- delete ------------------------------------------------------------------------------
    async def delete(self, plural: str, namespace: str | None, name: str, *,
                     precondition_rv: str | None = None, grace_period_seconds: int | None = None,
                     propagation_policy: str = "Background", group: str | None = None) -> JsonObject:
        """Delete an object. With finalizers it only gets ``deletionTimestamp`` (graceful deletion;
        removed once an update empties the finalizers) and is returned as stored; otherwise it is
        removed and returned with the deletion's resourceVersion. Dependents (ownerReferences to
        its uid, any resource) are deleted (Background, Foreground — done synchronously, dependents
        first) or released (Orphan). Raises NotFound, Conflict (precondition), BadRequest."""
        if propagation_policy not in _PROPAGATION:
            raise BadRequest(
                f'propagationPolicy "{propagation_policy}" is not one of "Background", "Foreground", "Orphan"'
            )
        wanted_rv = md.parse_resource_version(precondition_rv, "preconditions.resourceVersion")
        bucket = await self.ensure_bucket(plural)
        while True:
            rec, current = await self._current(bucket, plural, namespace, name, group)
            if wanted_rv is not None and wanted_rv != rec.revision:
                raise md.conflict(
                    plural, name, group,
                    why=f"the ResourceVersion in the precondition ({wanted_rv}) does not match the "
                        f"ResourceVersion in record ({rec.revision}). The object might have been modified",
                )
            uid = current["metadata"].get("uid")
            if propagation_policy == "Orphan" and uid:
                await self._ownership.release_dependents(uid)
            elif propagation_policy == "Foreground" and uid:
                await self._ownership.delete_dependents(uid)
            old = md.stored_form(current)
            try:
                if old["metadata"].get("finalizers"):
                    if old["metadata"].get("deletionTimestamp"):
                        return current  # already being deleted
                    stored = md.compute_deleting(old, grace_period_seconds=grace_period_seconds)
                    revision = await self.kv.write(bucket, compute_key(namespace, name), _encode(stored),
                                                   expected=rec.revision)
                    return md.with_resource_version(stored, revision)
                revision = await self._remove(bucket, plural, namespace, name, rec, old)
            except WrongLastRevision:
                if wanted_rv is not None:
                    raise md.conflict(plural, name, group) from None
                continue
            return md.with_resource_version(old, revision)

    async def _remove(self, bucket: str, plural: str, namespace: str | None, name: str,
                      rec: KvRecord, last: dict[str, Any]) -> int:
        """Write the delete marker (carrying the last state) by CAS, then cascade."""
        revision = await self.kv.write(bucket, compute_key(namespace, name), _encode(last),
                                       expected=rec.revision, delete=True)
        self._seen.forget(bucket, rec.key)
        uid = last["metadata"].get("uid")
        if uid:
            await self._ownership.delete_dependents(uid)
        return revision

    async def delete_collection(self, plural: str, namespace: str | None = None, *,
                                label_selector: str | None = None, field_selector: str | None = None,
                                propagation_policy: str = "Background", group: str | None = None) -> JsonObjects:
        """Delete every object the selectors match (Kubernetes' deletecollection): objects already
        gone meanwhile are skipped. Returns what :meth:`delete` returned for each."""
        items, _ = await self.list(plural, namespace, label_selector=label_selector, field_selector=field_selector)
        out = []
        for obj in items:
            meta = obj["metadata"]
            try:
                out.append(await self.delete(plural, meta.get("namespace"), meta["name"],
                                             propagation_policy=propagation_policy, group=group))
            except NotFound:
                continue
        return out

    # -- ownership and compaction (see shared.store.ownership / shared.store.compaction) -----
    async def collect_garbage(self) -> int:
        """Finish cascades a crashed process left half done (:meth:`Ownership.collect_garbage`)."""
        return await self._ownership.collect_garbage()

    async def compaction_watermark(self, plural: str) -> int:
        """Highest revision of ``plural`` whose delete marker may have been purged (0 = none)."""
        return await self._compaction.watermark(plural)

    async def compact(self, plural: str, *, older_than: float = 3600.0) -> int:
        """Purge delete markers older than ``older_than`` s (:meth:`Compaction.compact`)."""
        return await self._compaction.compact(plural, older_than=older_than)

    async def compact_all(self, *, older_than: float = 3600.0) -> int:
        """:meth:`compact` every bucket of this store; returns the number of markers purged."""
        return await self._compaction.compact_all(older_than=older_than)

    async def maintain(self, *, compact: bool = True, keep_deleted: float = 3600.0) -> tuple[int, int]:
        """One maintenance pass: with ``compact``, purge delete markers older than
        ``keep_deleted`` s (:meth:`compact_all`), then :meth:`collect_garbage`. A failing step
        is logged and does not keep the other from running. Returns (markers purged, owners
        whose dependents were collected). Needs a NATS user that may purge the buckets' streams
        and write every bucket (virt-api's or admin's, :mod:`shared.nats_auth`)."""
        purged = collected = 0
        if compact:
            try:
                purged = await self.compact_all(older_than=keep_deleted)
            except ApiError as err:
                log.warning("store compaction failed: %s", err)
        try:
            collected = await self.collect_garbage()
        except ApiError as err:
            log.warning("store garbage collection failed: %s", err)
        if purged or collected:
            log.info("store maintenance: %d delete markers purged, %d dead owners' dependents collected",
                     purged, collected)
        return purged, collected

    async def run_maintenance(self, *, interval: float = 30.0, compaction_interval: float = 300.0,
                              keep_deleted: float = 3600.0) -> None:
        """Forever (until cancelled): a :meth:`maintain` pass at once and every ``interval`` s,
        compacting in the first pass and then once ``compaction_interval`` s have passed since
        the last compaction (kube-apiserver's ``--etcd-compaction-interval``, default 5 min);
        the garbage collection runs every pass. Meant for one process at a time (virt-api's
        elected maintenance replica); failures are logged and retried next pass."""
        last_compaction: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            compact = compute_compaction_due(loop.time(), last_compaction, compaction_interval)
            if compact:
                last_compaction = loop.time()
            await self.maintain(compact=compact, keep_deleted=keep_deleted)
            await asyncio.sleep(interval)

    # -- watch -------------------------------------------------------------------------------
    def watch(self, plural: str, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              bookmark_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        """Stream changes as :class:`WatchEvent`. ``resource_version`` None/"0"/"" = current state
        as ADDED events first; otherwise every change after it exactly once, in order (including
        deletions; objects leaving the selector arrive as DELETED). Selector errors raise
        BadRequest here; Gone (410) is raised by the iterator when history no longer reaches back.
        Survives nats-server restarts (resumes from the last revision seen).

        ``bookmark_interval`` (s; None = never) makes an idle watch send BOOKMARK events at most
        that often, whose object is only ``{"metadata": {"resourceVersion": rv}}`` (the caller adds
        apiVersion/kind): resuming from rv misses nothing (Kubernetes' allowWatchBookmarks)."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        start_rv = md.parse_resource_version(resource_version)
        return stream_watch(self, plural, namespace, start_rv or None, labels, fields, bookmark_interval)
