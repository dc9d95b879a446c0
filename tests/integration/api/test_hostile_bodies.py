"""Hostile bodies against the real virt-api process: a YAML alias bomb and bodies nested 100,000
levels deep get an immediate 400 Status (not a hang, not a 500), the server keeps answering, and
duplicate fields follow fieldValidation (Strict 422, Warn a Warning header, Ignore nothing)."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from hostile_bodies import BOMB_MESSAGE, TOO_DEEP, alias_bomb

from tests.integration.api.vm_factory import GROUP, VERSION, VMS, make_vm


@pytest.fixture
async def http(api):
    connector = aiohttp.TCPConnector(ssl=api.ssl_context())
    async with aiohttp.ClientSession(api.url, headers=api.headers(), connector=connector) as session:
        yield session


def vms_url(ns: str, name: str | None = None) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{VMS}" + (f"/{name}" if name else "")


async def post_status(http: aiohttp.ClientSession, url: str, body: bytes, content_type: str) -> dict:
    async with http.post(url, data=body, headers={"Content-Type": content_type},
                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
        status = await resp.json(content_type=None)
        assert resp.status == status["code"]
    return status


@pytest.mark.parametrize(("body", "content_type", "message"), [
    pytest.param(alias_bomb(), "application/yaml", BOMB_MESSAGE, id="yaml-alias-bomb"),
    pytest.param(b"&a [*a]\n", "application/yaml",
                 "the YAML body has a recursive alias: the node at line 1 column 1 contains an alias of itself",
                 id="yaml-recursive-anchor"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", TOO_DEEP, id="json-lists-100000"),
    pytest.param(b'{"a":' * 100_000 + b"{}" + b"}" * 100_000, "application/json", TOO_DEEP, id="json-objects-100000"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/yaml", TOO_DEEP, id="yaml-flow-100000"),
    pytest.param(b"- " * 50_000 + b"x\n", "application/yaml", TOO_DEEP, id="yaml-block-50000"),
])
async def test_hostile_bodies_get_400_at_once_and_the_server_still_answers(http, namespace, body, content_type,
                                                                           message):
    started = time.monotonic()
    status = await post_status(http, vms_url(namespace), body, content_type)
    assert time.monotonic() - started < 5
    assert (status["kind"], status["code"], status["reason"], status["message"]) == (
        "Status", 400, "BadRequest", message)
    async with http.get(vms_url(namespace), timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert (resp.status, (await resp.json())["items"]) == (200, [])


@pytest.mark.parametrize(("body", "content_type"), [
    pytest.param(b'{"spec":' * 100_000 + b"{}" + b"}" * 100_000, "application/merge-patch+json", id="merge-patch"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json-patch+json", id="json-patch"),
])
async def test_deep_patches_get_400_and_leave_the_object_alone(http, namespace, body, content_type):
    async with http.post(vms_url(namespace), json=make_vm("patched")) as resp:
        assert resp.status == 201
        created = await resp.json()
    async with http.patch(vms_url(namespace, "patched"), data=body, headers={"Content-Type": content_type},
                          timeout=aiohttp.ClientTimeout(total=10)) as resp:
        status = await resp.json(content_type=None)
        assert (resp.status, status["reason"], status["message"]) == (400, "BadRequest", TOO_DEEP)
    async with http.get(vms_url(namespace, "patched")) as resp:
        assert (await resp.json())["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def duplicated_name_body(name: str) -> bytes:
    """A valid VM whose metadata gives ``name`` twice: first ``<name>-first``, then ``name``."""
    text = json.dumps(make_vm(name))
    return text.replace(f'"name": "{name}"', f'"name": "{name}-first", "name": "{name}"', 1).encode()


async def test_duplicate_field_under_strict_is_422_naming_the_field(http, namespace):
    status = await post_status(http, vms_url(namespace) + "?fieldValidation=Strict", duplicated_name_body("dup"),
                               "application/json")
    assert (status["code"], status["reason"], status["message"]) == (
        422, "Invalid", 'VirtualMachine.kubevirt.io "dup" is invalid: metadata.name: duplicate field "metadata.name"')
    assert status["details"]["causes"] == [
        {"reason": "FieldValueDuplicate", "message": 'duplicate field "metadata.name"', "field": "metadata.name"}]
    async with http.get(vms_url(namespace)) as resp:
        assert (await resp.json())["items"] == []


@pytest.mark.parametrize(("query", "warnings"), [
    pytest.param("", ['299 - "duplicate field \\"metadata.name\\""'], id="default-warn"),
    pytest.param("?fieldValidation=Warn", ['299 - "duplicate field \\"metadata.name\\""'], id="warn"),
    pytest.param("?fieldValidation=Ignore", [], id="ignore"),
])
async def test_duplicate_field_under_warn_or_ignore_keeps_the_last_value(http, namespace, query, warnings):
    async with http.post(vms_url(namespace) + query, data=duplicated_name_body("dup"),
                         headers={"Content-Type": "application/json"}) as resp:
        created = await resp.json()
        assert (resp.status, resp.headers.getall("Warning", [])) == (201, warnings)
    assert created["metadata"]["name"] == "dup"
