"""Hostile request bodies: YAML alias bombs, recursive anchors, deep nesting, duplicate fields —
through the server's decoder (negotiation), the admission parse_body and rest's fieldValidation
handling of duplicates."""

from __future__ import annotations

import time

import pytest
from hostile_bodies import BOMB_MESSAGE, TOO_DEEP, alias_bomb

from services.virt_api.request_body import parse_body
from services.virt_api.negotiation import decode_document, decode_object, decode_object_with_duplicates
from services.virt_api.rest import decode_write_body
from services.virt_api.safe_decoding import (
    MAX_NESTING_DEPTH,
    check_depth,
    find_duplicate_json_fields,
    load_yaml,
)
from shared.api.resources import VIRTUAL_MACHINE
from shared.errors import BadRequest, Invalid


def nested_json_lists(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_json_objects(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize("decode", [
    pytest.param(lambda raw: decode_object(raw, "application/yaml"), id="server-decoder"),
    pytest.param(lambda raw: parse_body(raw, "application/yaml"), id="admission-parse-body"),
])
def test_alias_bomb_is_refused_at_once(decode):
    raw = alias_bomb()
    assert 350 <= len(raw) <= 460
    started = time.monotonic()
    with pytest.raises(BadRequest) as caught:
        decode(raw)
    assert time.monotonic() - started < 0.25
    assert (caught.value.code, caught.value.message) == (400, BOMB_MESSAGE)


@pytest.mark.parametrize(("raw", "where"), [
    pytest.param(b"&a [*a]\n", "line 1 column 1", id="sequence-in-itself"),
    pytest.param(b"metadata: &m {labels: *m}\n", "line 1 column 11", id="mapping-in-itself"),
    pytest.param(b"a: &x\n  - b: &y [*x]\n", "line 1 column 4", id="two-level-cycle"),
])
def test_recursive_anchor_is_refused(raw, where):
    with pytest.raises(BadRequest) as caught:
        decode_object(raw, "application/yaml")
    assert caught.value.message == (
        f"the YAML body has a recursive alias: the node at {where} contains an alias of itself")


@pytest.mark.parametrize(("raw", "content_type"), [
    pytest.param(nested_json_lists(100_000), "application/json", id="json-lists-100000"),
    pytest.param(b'{"a":' + nested_json_lists(100_000) + b"}", "application/json", id="json-object-then-lists"),
    pytest.param(nested_json_objects(100_000), "application/json", id="json-objects-100000"),
    pytest.param(nested_json_objects(MAX_NESTING_DEPTH + 1), "application/json", id="json-objects-101"),
    pytest.param(nested_json_lists(500), "application/json", id="json-under-python-recursion-limit"),
    pytest.param(nested_json_lists(100_000), "application/yaml", id="yaml-flow-100000"),
    pytest.param(b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 150)), "application/yaml",
                 id="yaml-block-149"),
    pytest.param(b"- " * 5000 + b"x\n", "application/yaml", id="yaml-compact-block-5000"),
    pytest.param(b"a: &a " + nested_json_lists(60) + b"\nb: [*a, " + b"[" * 40 + b"*a" + b"]" * 40 + b"]\n",
                 "application/yaml", id="yaml-deep-only-through-an-alias"),
])
def test_deep_bodies_are_refused_as_too_deep(raw, content_type):
    for decode in (decode_object, parse_body):
        with pytest.raises(BadRequest) as caught:
            decode(raw, content_type)
        assert (caught.value.code, caught.value.message) == (400, TOO_DEEP)


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_nesting_at_the_limit_is_accepted(content_type):
    doc = decode_object(nested_json_objects(MAX_NESTING_DEPTH), content_type)
    depth = 0
    while doc:
        doc, depth = doc["a"], depth + 1
    assert depth == MAX_NESTING_DEPTH - 1


def test_check_depth_counts_the_top_level_as_one():
    value: list = []
    for _ in range(MAX_NESTING_DEPTH - 1):
        value = [value]
    check_depth(value)
    with pytest.raises(BadRequest):
        check_depth([value])


def test_a_big_document_without_aliases_is_accepted():
    count = 110_000  # more nodes than the 100000 floor of the alias bound
    raw = ("items: [" + ",".join(str(i) for i in range(count)) + "]\n").encode()
    assert decode_object(raw, "application/yaml")["items"][-1] == count - 1


def test_aliases_may_expand_up_to_ten_times_the_distinct_nodes():
    anchor = "[" + ",".join(str(i) for i in range(12_000)) + "]"
    ok = f"a: &a {anchor}\nb: [{', '.join(['*a'] * 8)}]\n".encode()  # ~108k expanded, bound ~120k
    doc = decode_object(ok, "application/yaml")
    assert len(doc["b"]) == 8 and doc["b"][7] is doc["a"]  # shared, not copied
    over = f"a: &a {anchor}\nb: [{', '.join(['*a'] * 12)}]\n".encode()
    with pytest.raises(BadRequest) as caught:
        decode_object(over, "application/yaml")
    assert caught.value.message == BOMB_MESSAGE.replace("100000", "120050")


@pytest.mark.parametrize("decode", [
    pytest.param(lambda raw: decode_object(raw, "application/yaml"), id="server-decoder"),
    pytest.param(lambda raw: parse_body(raw, "application/yaml"), id="admission-parse-body"),
])
def test_yaml_reads_like_kubernetes_timestamps_stay_strings_keys_become_strings(decode):
    raw = b"metadata:\n  creationTimestamp: 2026-01-01T00:00:00Z\n  day: 2026-01-01\nlabels: {1: one, true: yes}\n"
    assert decode(raw) == {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "day": "2026-01-01"},
        "labels": {"1": "one", "true": True},
    }


def test_yaml_syntax_and_document_count_errors_stay_bad_requests():
    with pytest.raises(BadRequest) as caught:
        decode_object(b"a: 1\n---\nb: 2\n", "application/yaml")
    assert caught.value.message == "the body of the request holds 2 YAML documents; send one"
    with pytest.raises(BadRequest) as caught:
        decode_object(b"? [a]\n: 1\n", "application/yaml")
    assert caught.value.message == (
        "the body of the request could not be decoded as YAML: found a key that is a list or a mapping "
        "at line 1 column 3")
    assert decode_document(b"", "application/yaml") is None


# ---- duplicate fields ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "content_type", "paths", "kept"), [
    pytest.param(b'{"metadata":{"name":"dup","name":"dup2"}}', "application/json", ["metadata.name"], "dup2",
                 id="json"),
    pytest.param(b"metadata:\n  name: dup\n  name: dup2\n", "application/yaml", ["metadata.name"], "dup2", id="yaml"),
    pytest.param(b'{"metadata":{"name":"dup2"}}', "application/json", [], "dup2", id="json-none"),
])
def test_duplicate_fields_are_found_and_the_last_value_kept(raw, content_type, paths, kept):
    body, duplicates = decode_object_with_duplicates(raw, content_type)
    assert (duplicates, body["metadata"]["name"]) == (paths, kept)


def test_duplicate_json_paths_name_list_items_and_nested_objects():
    raw = b'{"spec":{"volumes":[{"name":"a"},{"name":"b","name":"c","x":{"k":1,"k":2}}]},"spec":{"v":[{"n":1,"n":2}]}}'
    assert find_duplicate_json_fields(raw) == ["spec", "spec.v[0].n"]


def test_yaml_merge_keys_are_not_duplicates():
    assert load_yaml(b"base: &b {x: 1}\nd: {<<: *b, x: 2}\n").duplicate_fields == []


DUP_VM = b'{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"dup","name":"dup2"}}'


def test_duplicates_under_strict_are_invalid_naming_the_field():
    with pytest.raises(Invalid) as caught:
        decode_write_body(DUP_VM, "application/json", VIRTUAL_MACHINE, "Strict")
    status = caught.value.to_status()
    assert (status["code"], status["reason"], status["message"]) == (
        422, "Invalid", 'VirtualMachine.kubevirt.io "dup2" is invalid: metadata.name: duplicate field "metadata.name"')
    assert status["details"]["causes"] == [
        {"reason": "FieldValueDuplicate", "message": 'duplicate field "metadata.name"', "field": "metadata.name"}]


@pytest.mark.parametrize(("mode", "warnings"), [
    ("Warn", ['duplicate field "metadata.name"']),
    ("Ignore", []),
])
def test_duplicates_under_warn_and_ignore_keep_the_last_value(mode, warnings):
    body, warned = decode_write_body(DUP_VM, "application/json", VIRTUAL_MACHINE, mode)
    assert (body["metadata"], warned) == ({"name": "dup2"}, warnings)
