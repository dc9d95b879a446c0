"""Telling a create's own earlier attempt from someone else's object when the create-if-absent fails.

A create writes its candidate (with the ``metadata.uid`` the store drew for it) under
``Nats-Expected-Last-Subject-Sequence`` 0 — or the revision of the key's delete marker. When
nats-server restarts after storing the message but before its ack reaches the writer, the retry
meets the writer's own record and the server refuses it as a wrong last sequence (the server's
de-duplication by ``Nats-Msg-Id`` does not survive the restart; :mod:`shared.store.kv` still
recognises its own message by that id, but only while it is the key's latest record). Once
another client has updated the new object — virt-controller adds its finalizer within
milliseconds — the latest record is that update, and only the object's identity is left to say
whose it is: the uid, which Kubernetes sets once on create and never changes (``metadata.uid``,
k8s.io/apimachinery ``ObjectMeta``). Content cannot say it: two creates may send the same body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.store.records import KvRecord
from shared.store.watch import decode_object

#: Create attempts over delete markers before giving up (each one lost a race with another writer).
MAX_CREATE_ATTEMPTS = 4


@dataclass(frozen=True)
class CreateRetry:
    """What a create does after its compare-and-swap failed.

    ``action``: ``"ours"`` — the key holds the candidate's own object (possibly updated or
    deleted since): the create happened, answer with that record; ``"taken"`` — another object
    lives under the name (AlreadyExists); ``"write"`` — the key holds no live object, write the
    candidate again expecting revision ``expected`` (0 = a key with no message at all; otherwise
    the delete marker's revision); ``"unknown"`` — the key holds another object's delete marker
    after an attempt of this create went unacknowledged: that attempt may have been stored and
    deleted before the other object came and went, so neither "created" nor "free" is known, and
    writing again could bring back an object whose deletion was acknowledged (504 Timeout, as
    kube-apiserver answers a write whose outcome it does not know).
    """

    action: Literal["ours", "taken", "write", "unknown"]
    expected: int = 0


def compute_create_retry(latest: KvRecord | None, candidate_uid: str, candidate_created: str = "", *,
                         ambiguous: bool = False) -> CreateRetry:
    """Decide from the key's latest record (None: no message left, its history was purged), the
    uid the store gave the candidate and its ``creationTimestamp`` (RFC 3339, seconds). A delete
    marker carries the object's last state, so a create whose object was deleted again before the
    retry is still recognised as done. A marker of an object created in a later second than the
    candidate is another create of the name that won and was deleted while this one waited (a
    create retried after a partition): writing over it would bring a deleted name back, so the
    name counts as taken (409, as for two racing creates in Kubernetes). ``ambiguous``: an earlier
    publish of this create went unacknowledged (:class:`shared.store.records.WrongLastRevision`);
    then a foreign marker or a purged history gives ``"unknown"``, never ``"write"``."""
    state = decode_object(latest.value) if latest is not None else None
    meta = (state or {}).get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    if latest is not None and candidate_uid and uid == candidate_uid:
        return CreateRetry("ours")
    if ambiguous and (latest is None or latest.deleted):
        return CreateRetry("unknown")
    if latest is None:
        return CreateRetry("write", 0)
    if latest.deleted:
        created = meta.get("creationTimestamp") if isinstance(meta, dict) else None
        if candidate_created and isinstance(created, str) and created > candidate_created:
            return CreateRetry("taken")
        return CreateRetry("write", latest.revision)
    return CreateRetry("taken")
