"""virt-api's HTTP behaviour over TLS: auth, Status bodies for every error code, content types,
namespaces, fieldValidation warnings, dryRun, Table, /status, deletecollection, DeleteOptions,
OpenAPI and health endpoints."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import yaml

from tests.integration.api.vm_factory import GROUP, VERSION, VMS, make_vm, make_vmi


@pytest.fixture
async def http(api):
    connector = aiohttp.TCPConnector(ssl=api.ssl_context())
    async with aiohttp.ClientSession(api.url, headers=api.headers(), connector=connector) as session:
        yield session


def vms_url(ns: str, name: str | None = None, sub: str | None = None) -> str:
    url = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{VMS}"
    if name:
        url += f"/{name}"
    if sub:
        url += f"/{sub}"
    return url


async def expect_status(resp: aiohttp.ClientResponse, code: int, reason: str) -> dict:
    body = await resp.json(content_type=None)
    assert (resp.status, body["kind"], body["code"], body["reason"]) == (code, "Status", code, reason), body
    return body


async def test_requests_without_the_token_get_401_but_probes_answer(api):
    connector = aiohttp.TCPConnector(ssl=api.ssl_context())
    async with aiohttp.ClientSession(api.url, connector=connector) as anonymous:
        async with anonymous.get("/apis") as resp:
            await expect_status(resp, 401, "Unauthorized")
        async with anonymous.get("/apis", headers={"Authorization": "Bearer wrong"}) as resp:
            await expect_status(resp, 401, "Unauthorized")
        for probe in ("/healthz", "/readyz", "/livez"):
            async with anonymous.get(probe) as resp:
                assert (resp.status, await resp.text()) == (200, "ok")


async def test_plain_http_to_the_tls_port_does_not_serve_the_api(api):
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(api.url.replace("https://", "http://") + "/apis") as resp:
                assert resp.status == 400  # a TLS server answering plain HTTP must not serve data
                raise aiohttp.ClientError("refused")


@pytest.mark.parametrize(
    "method,path,body,headers,code,reason",
    [
        pytest.param("GET", "/apis/nope.io/v1/things", None, {}, 404, "NotFound", id="unknown-group-404"),
        pytest.param("GET", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines/none", None, {}, 404, "NotFound",
                     id="missing-object-404"),
        pytest.param("GET", "/nothing/here", None, {}, 404, "NotFound", id="unknown-path-404"),
        pytest.param("PUT", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines", b"{}", {}, 405,
                     "MethodNotAllowed", id="put-on-collection-405"),
        pytest.param("POST", "/apis/kubevirt.io/v1/virtualmachines", b"{}", {}, 405, "MethodNotAllowed",
                     id="create-without-namespace-405"),
        pytest.param("POST", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines", b"{not json",
                     {"Content-Type": "application/json"}, 400, "BadRequest", id="bad-json-400"),
        pytest.param("POST", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines", b"\x0a\x0b",
                     {"Content-Type": "application/vnd.kubernetes.protobuf"}, 415, "UnsupportedMediaType",
                     id="protobuf-415"),
        pytest.param("POST", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines", b"{}",
                     {"Content-Type": "application/json"}, 400, "BadRequest", id="empty-object-400"),
        pytest.param("PATCH", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines/a", b"{}",
                     {"Content-Type": "application/strategic-merge-patch+json"}, 415, "UnsupportedMediaType",
                     id="strategic-merge-patch-415"),
        pytest.param("GET", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines?labelSelector=a%20in%20(",
                     None, {}, 400, "BadRequest", id="bad-selector-400"),
        pytest.param("GET", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines?fieldSelector=spec.x%3Dy",
                     None, {}, 400, "BadRequest", id="unsupported-field-selector-400"),
        pytest.param("POST", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines?fieldValidation=Loud", b"{}",
                     {"Content-Type": "application/json"}, 400, "BadRequest", id="bad-field-validation-400"),
    ],
)
async def test_every_error_is_a_status_body(http, method, path, body, headers, code, reason):
    async with http.request(method, path, data=body, headers=headers) as resp:
        await expect_status(resp, code, reason)


async def test_a_body_over_3_mib_is_413_and_nothing_is_stored(http, namespace):
    vm = make_vm("big")
    vm["metadata"]["annotations"] = {"blob": "x" * (3 * 1024 * 1024 + 10)}
    async with http.post(vms_url(namespace), json=vm) as resp:
        await expect_status(resp, 413, "RequestEntityTooLarge")
    async with http.get(vms_url(namespace)) as resp:
        assert (await resp.json())["items"] == []


async def test_yaml_bodies_create_like_json(http, namespace):
    body = yaml.safe_dump(make_vm("from-yaml")).encode()
    async with http.post(vms_url(namespace), data=body, headers={"Content-Type": "application/yaml"}) as resp:
        assert resp.status == 201
        assert (await resp.json())["metadata"]["name"] == "from-yaml"
    async with http.get(vms_url(namespace, "from-yaml"), headers={"Accept": "application/yaml"}) as resp:
        assert resp.headers["Content-Type"].startswith("application/yaml")
        assert yaml.safe_load(await resp.text())["metadata"]["namespace"] == namespace


async def test_namespace_in_body_must_match_the_url(http, namespace):
    vm = make_vm("elsewhere")
    vm["metadata"]["namespace"] = "other"
    async with http.post(vms_url(namespace), json=vm) as resp:
        body = await expect_status(resp, 400, "BadRequest")
    assert "does not match the namespace" in body["message"]
    vm["metadata"]["namespace"] = namespace
    async with http.post(vms_url(namespace), json=vm) as resp:
        assert resp.status == 201


async def test_generate_name_and_already_exists(http, namespace):
    vm = make_vm("x")
    del vm["metadata"]["name"]
    vm["metadata"]["generateName"] = "gen-"
    async with http.post(vms_url(namespace), json=vm) as resp:
        name = (await resp.json())["metadata"]["name"]
    assert resp.status == 201 and name.startswith("gen-") and len(name) > 4
    async with http.post(vms_url(namespace), json=make_vm(name)) as resp:
        await expect_status(resp, 409, "AlreadyExists")


@pytest.mark.parametrize(
    "mode,code,warned",
    [
        pytest.param("Strict", 422, False, id="strict-rejects"),
        pytest.param("Warn", 201, True, id="warn-stores-and-warns"),
        pytest.param("Ignore", 201, False, id="ignore-stores-silently"),
    ],
)
async def test_field_validation_handles_unknown_fields(http, namespace, mode, code, warned):
    vm = make_vm("unknown-field")
    vm["spec"]["frobnicate"] = True
    async with http.post(vms_url(namespace) + f"?fieldValidation={mode}", json=vm) as resp:
        body = await resp.json()
        warnings = resp.headers.getall("Warning", [])
    assert resp.status == code, body
    if code == 422:
        assert any("frobnicate" in c["field"] or "frobnicate" in c["message"] for c in body["details"]["causes"])
    else:
        assert "frobnicate" not in body["spec"]
    assert bool([w for w in warnings if w.startswith('299 - "') and "frobnicate" in w]) is warned


async def test_dry_run_validates_without_storing(http, namespace):
    async with http.post(vms_url(namespace) + "?dryRun=All", json=make_vm("dry")) as resp:
        assert resp.status == 201
        assert (await resp.json())["metadata"]["name"] == "dry"
    async with http.get(vms_url(namespace, "dry")) as resp:
        await expect_status(resp, 404, "NotFound")


async def test_update_needs_a_resource_version_and_a_matching_name(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("upd")) as resp:
        vm = await resp.json()
    no_rv = {**vm, "metadata": {k: v for k, v in vm["metadata"].items() if k != "resourceVersion"}}
    async with http.put(vms_url(namespace, "upd"), json=no_rv) as resp:
        body = await expect_status(resp, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    async with http.put(vms_url(namespace, "other-name"), json=vm) as resp:
        await expect_status(resp, 400, "BadRequest")
    async with http.put(vms_url(namespace, "upd"), json=vm) as resp:
        assert resp.status == 200


async def test_status_subresource_writes_only_status_and_main_resource_keeps_it(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("st")) as resp:
        vm = await resp.json()
    patch = {"status": {"printableStatus": "Stopped"}, "spec": {"runStrategy": "Always"}}
    async with http.patch(vms_url(namespace, "st", "status"), data=json.dumps(patch),
                          headers={"Content-Type": "application/merge-patch+json"}) as resp:
        after = await resp.json()
    assert resp.status == 200, after
    assert after["status"]["printableStatus"] == "Stopped"
    assert after["spec"]["runStrategy"] == "Halted"  # spec is not written through /status
    assert after["metadata"]["generation"] == vm["metadata"]["generation"]
    body = {**after, "status": {"printableStatus": "Hacked"}}
    async with http.put(vms_url(namespace, "st"), json=body) as resp:
        kept = await resp.json()
    assert kept["status"]["printableStatus"] == "Stopped"  # status is not written through the main resource
    async with http.get(vms_url(namespace, "st", "status")) as resp:
        assert (await resp.json())["status"]["printableStatus"] == "Stopped"


async def test_patch_with_a_stale_resource_version_is_a_conflict(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("p")) as resp:
        vm = await resp.json()
    async with http.patch(vms_url(namespace, "p"), data=b'{"metadata":{"labels":{"a":"1"}}}',
                          headers={"Content-Type": "application/merge-patch+json"}) as resp:
        assert resp.status == 200
    stale = json.dumps({"metadata": {"resourceVersion": vm["metadata"]["resourceVersion"], "labels": {"a": "2"}}})
    async with http.patch(vms_url(namespace, "p"), data=stale,
                          headers={"Content-Type": "application/merge-patch+json"}) as resp:
        await expect_status(resp, 409, "Conflict")
    bad = b'[{"op":"test","path":"/spec/runStrategy","value":"Always"}]'
    async with http.patch(vms_url(namespace, "p"), data=bad,
                          headers={"Content-Type": "application/json-patch+json"}) as resp:
        await expect_status(resp, 422, "Invalid")


async def test_concurrent_patches_without_a_resource_version_all_apply(http, namespace):
    """As the Kubernetes API server's GuaranteedUpdate: an unconditional patch losing the CAS to
    another writer is applied again to the new version, never answered 409 (30 at once here)."""
    async with http.post(vms_url(namespace), json=make_vm("many")) as resp:
        assert resp.status == 201

    async def label(i: int) -> int:
        body = json.dumps({"metadata": {"labels": {f"k{i}": str(i)}}})
        async with http.patch(vms_url(namespace, "many"), data=body,
                              headers={"Content-Type": "application/merge-patch+json"}) as resp:
            return resp.status

    assert await asyncio.gather(*(label(i) for i in range(30))) == [200] * 30
    async with http.get(vms_url(namespace, "many")) as resp:
        labels = (await resp.json())["metadata"]["labels"]
    assert {f"k{i}": str(i) for i in range(30)}.items() <= labels.items()


async def test_delete_options_precondition_and_deletecollection_with_selector(http, namespace):
    for name, team in (("d1", "a"), ("d2", "a"), ("d3", "b")):
        async with http.post(vms_url(namespace), json=make_vm(name, labels={"team": team})) as resp:
            assert resp.status == 201
    wrong = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}
    async with http.delete(vms_url(namespace, "d1"), json=wrong) as resp:
        await expect_status(resp, 409, "Conflict")
    async with http.delete(vms_url(namespace, "d1"), params={"propagationPolicy": "Sideways"}) as resp:
        await expect_status(resp, 400, "BadRequest")
    async with http.delete(vms_url(namespace), params={"labelSelector": "team=a"}) as resp:
        deleted = await resp.json()
    assert resp.status == 200
    assert sorted(i["metadata"]["name"] for i in deleted["items"]) == ["d1", "d2"]
    async with http.get(vms_url(namespace)) as resp:
        assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["d3"]


async def test_deleting_a_vm_deletes_the_vmi_it_owns(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("owner")) as resp:
        vm = await resp.json()
    vmis = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/virtualmachineinstances"
    async with http.post(vmis, json=make_vmi("owner", owner=vm)) as resp:
        assert resp.status == 201, await resp.text()
    async with http.delete(vms_url(namespace, "owner")) as resp:
        assert resp.status == 200
    async with http.get(vmis) as resp:
        items = (await resp.json())["items"]
    assert all(i["metadata"].get("deletionTimestamp") for i in items)  # gone, or terminating on its finalizer


async def test_table_response_has_kubevirt_columns(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("tbl")) as resp:
        assert resp.status == 201
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with http.get(vms_url(namespace), headers={"Accept": accept}) as resp:
        table = await resp.json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]][:4] == ["Name", "Age", "Status", "Ready"]
    assert [r["cells"][0] for r in table["rows"]] == ["tbl"]


async def test_watch_with_bookmarks_flag_and_timeout_ends_cleanly(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("wb")) as resp:
        assert resp.status == 201
    async with http.get(vms_url(namespace), params={"watch": "true", "allowWatchBookmarks": "true",
                                                    "timeoutSeconds": "1"}) as resp:
        lines = [json.loads(line) for line in (await resp.text()).splitlines() if line.strip()]
    assert [e["type"] for e in lines if e["type"] != "BOOKMARK"] == ["ADDED"]
    assert lines[0]["object"]["metadata"]["name"] == "wb"


async def test_discovery_and_openapi_documents(http):
    async with http.get("/apis/kubevirt.io/v1") as resp:
        resources = {r["name"]: r for r in (await resp.json())["resources"]}
    assert resources["virtualmachines"]["shortNames"] == ["vm", "vms"]
    async with http.get("/api/v1") as resp:
        assert [r["name"] for r in (await resp.json())["resources"] if "/" not in r["name"]] == [
            "nodes", "persistentvolumeclaims", "namespaces", "events"]
    async with http.get("/api/v1/namespaces/anything") as resp:
        assert (await resp.json())["status"]["phase"] == "Active"
    async with http.get("/openapi/v3") as resp:
        index = await resp.json()
    assert "apis/kubevirt.io/v1" in index["paths"]
    async with http.get(index["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]) as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    async with http.get("/openapi/v2", headers={"Accept": "application/json"}) as resp:
        assert (await resp.json())["swagger"] == "2.0"
    async with http.get("/openapi/v2",
                        headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}) as resp:
        await expect_status(resp, 406, "NotAcceptable")


async def test_watch_with_table_accept_streams_one_row_tables(http, namespace):
    async with http.post(vms_url(namespace), json=make_vm("wt")) as resp:
        assert resp.status == 201
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with http.get(vms_url(namespace), params={"watch": "1", "timeoutSeconds": "1"},
                        headers={"Accept": accept}) as resp:
        events = [json.loads(line) for line in (await resp.text()).splitlines() if line.strip()]
    assert [(e["type"], e["object"]["kind"], [r["cells"][0] for r in e["object"]["rows"]]) for e in events] == [
        ("ADDED", "Table", ["wt"])]


async def test_namespaces_are_synthetic_and_read_only(http, namespace):
    async with http.get(f"/api/v1/namespaces/{namespace}") as resp:
        assert (await resp.json())["metadata"]["name"] == namespace
    async with http.get("/api/v1/namespaces/Not_Valid") as resp:
        await expect_status(resp, 404, "NotFound")
    async with http.delete(f"/api/v1/namespaces/{namespace}") as resp:
        await expect_status(resp, 405, "MethodNotAllowed")
    async with http.post(vms_url(namespace), json=make_vm("ns-holder")) as resp:
        assert resp.status == 201
    async with http.get("/api/v1/namespaces") as resp:
        assert namespace in [n["metadata"]["name"] for n in (await resp.json())["items"]]
