"""Pure parts of the store: selector parsing/matching and key encoding (no server needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import BadRequest
from shared.store import label_selector_from_dict, parse_field_selector, parse_label_selector
from shared.store.keys import compute_key, encode_token, parse_key

LABELS = {"app": "web", "tier": "front", "size": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("", True, id="empty-is-everything"),
        pytest.param("app=web", True, id="equals"),
        pytest.param("app==web", True, id="double-equals"),
        pytest.param("app=db", False, id="equals-miss"),
        pytest.param("app!=db", True, id="not-equals"),
        pytest.param("missing!=x", True, id="not-equals-absent-label"),
        pytest.param("app in (db, web)", True, id="in"),
        pytest.param("app notin (web)", False, id="notin"),
        pytest.param("missing notin (web)", True, id="notin-absent-label"),
        pytest.param("tier", True, id="exists"),
        pytest.param("!tier", False, id="does-not-exist"),
        pytest.param("size>2", True, id="greater"),
        pytest.param("size<3", False, id="less"),
        pytest.param(" app = web , tier in (front) ", True, id="whitespace"),
        pytest.param("app.kubernetes.io/name=x", False, id="prefixed-key"),
    ],
)
def test_label_selector_string_form(selector: str, matches: bool):
    assert parse_label_selector(selector).matches({"metadata": {"labels": LABELS}}) is matches


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("app=web,", id="trailing-comma"),
        pytest.param("app in web", id="in-without-parens"),
        pytest.param("app in ()", id="in-empty"),
        pytest.param("=web", id="no-key"),
        pytest.param("-app=web", id="key-starts-with-dash"),
        pytest.param("app=we b", id="space-in-value"),
        pytest.param("a>b", id="gt-not-integer"),
        pytest.param("app=" + "x" * 64, id="value-too-long"),
    ],
)
def test_malformed_label_selectors_are_bad_request(selector: str):
    with pytest.raises(BadRequest):
        parse_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param({}, True, id="empty-dict-everything"),
        pytest.param(None, False, id="none-nothing"),
        pytest.param({"matchLabels": {"app": "web"}}, True, id="match-labels"),
        pytest.param({"matchLabels": {"app": "db"}}, False, id="match-labels-miss"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, True, id="in"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}, False,
                     id="notin"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True, id="exists"),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False, id="not-exists"),
        pytest.param({"matchLabels": {"app": "web"},
                      "matchExpressions": [{"key": "size", "operator": "In", "values": ["4"]}]}, False, id="and"),
    ],
)
def test_label_selector_dict_form(selector, matches: bool):
    assert label_selector_from_dict(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Near"}]}, id="unknown-operator"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "In"}]}, id="in-without-values"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, id="exists-values"),
    ],
)
def test_malformed_label_selector_dicts_are_bad_request(selector):
    with pytest.raises(BadRequest):
        label_selector_from_dict(selector)


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("metadata.name=vm1", True, id="name"),
        pytest.param("metadata.name==vm1,metadata.namespace=default", True, id="both"),
        pytest.param("metadata.name!=vm1", False, id="not-name"),
        pytest.param("metadata.namespace=other", False, id="namespace-miss"),
    ],
)
def test_field_selector(selector: str, matches: bool):
    assert parse_field_selector(selector).matches({"metadata": {"name": "vm1", "namespace": "default"}}) is matches


def test_unknown_field_selector_names_the_supported_fields():
    with pytest.raises(BadRequest) as err:
        parse_field_selector("status.phase=Running")
    assert str(err.value) == '"status.phase" is not a known field selector: only "metadata.name", "metadata.namespace"'


@given(namespace=st.one_of(st.none(), st.text(min_size=1)), name=st.text(min_size=1))
def test_keys_round_trip_and_are_valid_nats_keys(namespace, name):
    key = compute_key(namespace, name)
    assert parse_key(key) == (namespace, name)
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_=") for ch in key.replace(".", ""))
    assert key.count(".") == 1 and not key.startswith("_kv")


def test_dotted_names_stay_readable():
    assert encode_token("vm.web-1") == "vm_2Eweb-1"
