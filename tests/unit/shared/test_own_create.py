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
