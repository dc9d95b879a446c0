"""The records of the store's KV buckets: what one stored message says, and the headers that say it.

A record is one message of a bucket's stream (``revision`` = stream sequence). Its headers carry
the compare-and-swap the writer asked for (``Nats-Expected-Last-Subject-Sequence``, so each record
knows the revision it replaced), the delete marker (``KV-Operation: DEL``, as nats-py and other KV
clients read it; server-made TTL markers carry ``Nats-Marker-Reason``), the creation mark
(``Kvpy-Create``) and the de-duplication id (``Nats-Msg-Id``). Also the two failures of record
access every layer above names: :class:`WrongLastRevision` and :class:`Compacted`.
"""

from __future__ import annotations

from dataclasses import dataclass

KV_OP = "KV-Operation"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
CREATE_MARK = "Kvpy-Create"  # set on object creations, so watchers tell ADDED from MODIFIED
MARKER_REASON = "Nats-Marker-Reason"  # server-made marker (per-key TTL expiry): the key is gone
DELETE_OPS = ("DEL", "PURGE")

@dataclass(frozen=True)
class Progress:
    """A tail's note that every record under its filter up to ``revision`` has been delivered."""

    revision: int


class WrongLastRevision(Exception):
    """The CAS failed: the key's latest revision is not the expected one.

    ``ambiguous`` is True when an earlier publish of the same write went unacknowledged (a
    timeout, a server restart): that attempt may have been stored and then changed or deleted by
    others, so the failure does not prove the write never happened.
    """

    def __init__(self, message: str = "wrong last sequence", *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class Compacted(Exception):
    """Revisions the caller asked for are no longer in the stream.

    ``requested`` is the first revision wanted, ``oldest`` the first still held.
    """

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} compacted, oldest is {oldest}")
        self.requested = requested
        self.oldest = oldest


@dataclass(frozen=True)
class KvRecord:
    """One stored message: ``revision`` is its stream sequence, ``prev_revision`` the revision the
    writer expected to replace (0 = none), ``deleted`` for delete/purge markers (``value`` then
    holds the object's last state, possibly empty when another client wrote the marker)."""

    key: str
    revision: int
    prev_revision: int
    deleted: bool
    value: bytes
    created: bool = False
    timestamp: float = 0.0  # when the server stored it (epoch s); 0 when not delivered by a consumer


def parse_record(prefix: str, subject: str, seq: int, headers: dict[str, str] | None, data: bytes,
                 timestamp: float = 0.0) -> KvRecord:
    """The :class:`KvRecord` of a message on ``subject`` (key = subject after ``prefix``)."""
    headers = headers or {}
    try:
        prev = int(headers.get(EXPECTED_LAST) or 0)
    except ValueError:
        prev = 0
    deleted = headers.get(KV_OP) in DELETE_OPS or MARKER_REASON in headers
    return KvRecord(subject[len(prefix) :], seq, prev, deleted, data or b"", CREATE_MARK in headers, timestamp)

