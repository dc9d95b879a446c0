"""compute_create_retry: a failed create-if-absent tells its own stored attempt (same uid) from
another object under the name, and a delete marker (write over it) from a live object."""

from __future__ import annotations

import json

import pytest

from shared.store.own_create import CreateRetry, compute_create_retry
from shared.store.records import KvRecord


def record(uid: str | None, *, revision: int = 7, deleted: bool = False, value: bytes | None = None) -> KvRecord:
    body = value if value is not None else json.dumps({"metadata": {"name": "vm", "uid": uid}}).encode()
    return KvRecord("default.vm", revision, 0, deleted, body)


@pytest.mark.parametrize(("latest", "expected"), [
    (record("mine"), CreateRetry("ours")),                         # our attempt, maybe updated since
    (record("mine", deleted=True), CreateRetry("ours")),           # ours, deleted again before the retry
    (record("theirs"), CreateRetry("taken")),                      # someone else's object: 409
    (record("theirs", revision=9, deleted=True), CreateRetry("write", 9)),  # a delete marker: write over it
    (record(None, revision=4, deleted=True, value=b""), CreateRetry("write", 4)),  # marker without a state
    (None, CreateRetry("write", 0)),                               # history purged meanwhile
    (record(None), CreateRetry("taken")),                          # an object without uid is not ours
])
def test_create_retry_decision(latest, expected):
    assert compute_create_retry(latest, "mine") == expected


def test_an_empty_candidate_uid_never_matches():
    assert compute_create_retry(record(""), "") == CreateRetry("taken")


def marker(created: str, *, revision: int = 9) -> KvRecord:
    body = json.dumps({"metadata": {"name": "vm", "uid": "theirs", "creationTimestamp": created}}).encode()
    return KvRecord("default.vm", revision, 0, True, body)


@pytest.mark.parametrize(("created", "expected"), [
    ("2026-01-01T10:00:00Z", CreateRetry("write", 9)),   # an older object's marker: the name is free again
    ("2026-01-01T10:00:05Z", CreateRetry("write", 9)),   # same second: a quick delete and create again
    ("2026-01-01T10:00:20Z", CreateRetry("taken")),      # created and deleted while this create waited
])
def test_a_marker_of_a_later_create_is_not_written_over(created, expected):
    assert compute_create_retry(marker(created), "mine", "2026-01-01T10:00:05Z") == expected


@pytest.mark.parametrize(("latest", "expected"), [
    (record("mine", deleted=True), CreateRetry("ours")),             # our unacknowledged attempt, deleted since
    (record("mine"), CreateRetry("ours")),
    (record("theirs"), CreateRetry("taken")),                        # a live object is someone's: 409 either way
    (record("theirs", revision=9, deleted=True), CreateRetry("unknown")),  # ours may be under that history
    (None, CreateRetry("unknown")),                                  # history purged: nothing to tell by
])
def test_after_an_unacknowledged_attempt_a_foreign_marker_is_never_written_over(latest, expected):
    """A create whose first publish went unacknowledged may have been stored, deleted (acknowledged
    to its deleter) and followed by another create and delete of the name; writing again would
    bring the acknowledged-deleted object back, so the outcome is reported unknown instead."""
    assert compute_create_retry(latest, "mine", ambiguous=True) == expected
