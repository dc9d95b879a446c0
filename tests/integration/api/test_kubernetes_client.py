"""The official ``kubernetes`` Python client drives virt-api unchanged (CustomObjectsApi, Watch)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.integration.api.vm_factory import GROUP, VERSION, VMS, make_vm


@pytest.fixture
def custom(api):
    api_client = config.new_client_from_config(config_file=str(api.kubeconfig))
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def test_custom_objects_api_creates_reads_lists_patches_replaces_and_deletes(custom, namespace):
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, VMS, make_vm("vm-a"))
    meta = created["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("vm-a", namespace, 1)
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")

    got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a")
    assert got == created

    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, VMS)
    assert listed["kind"] == "VirtualMachineList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["vm-a"]

    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a",
                                                    {"spec": {"runStrategy": "Always"}})
    assert patched["spec"]["runStrategy"] == "Always"
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    json_patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, VMS, "vm-a",
        [{"op": "add", "path": "/metadata/labels/tier", "value": "gold"}],
        _content_type="application/json-patch+json")
    assert json_patched["metadata"]["labels"]["tier"] == "gold"
    assert json_patched["metadata"]["generation"] == 2  # labels are not spec

    body = dict(json_patched)
    body["spec"] = {**body["spec"], "runStrategy": "Halted"}
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a", body)
    assert replaced["spec"]["runStrategy"] == "Halted"
    with pytest.raises(ApiException) as stale:
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a", body)
    assert stale.value.status == 409

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "vm-a")
    assert gone.value.status == 404


def test_cluster_wide_list_and_label_selector_see_only_matching_objects(custom, namespace):
    other = namespace + "-b"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, VMS, make_vm("x", labels={"team": "red"}))
    custom.create_namespaced_custom_object(GROUP, VERSION, other, VMS, make_vm("x", labels={"team": "blue"}))
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, VMS, label_selector="team in (red,blue)")
    mine = {(i["metadata"]["namespace"], i["metadata"]["labels"]["team"]) for i in everywhere["items"]
            if i["metadata"]["namespace"] in (namespace, other)}
    assert mine == {(namespace, "red"), (other, "blue")}
    red = custom.list_cluster_custom_object(GROUP, VERSION, VMS, label_selector="team=red",
                                            field_selector=f"metadata.namespace={namespace}")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in red["items"]] == [(namespace, "x")]


def test_watch_from_a_resource_version_gets_every_later_change_once_in_order(custom, namespace):
    start_rv = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, VMS)["metadata"]["resourceVersion"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, VMS, make_vm("w"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "w", {"spec": {"runStrategy": "Always"}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "w", {"metadata": {"labels": {"a": "b"}}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "w")

    seen = []
    w = watch.Watch()
    for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, VMS,
                          resource_version=start_rv, timeout_seconds=2):
        seen.append((event["type"], event["object"]["metadata"]["resourceVersion"]))
        if event["type"] == "DELETED":
            w.stop()
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    revisions = [int(rv) for _, rv in seen]
    assert revisions == sorted(set(revisions))


def test_watch_sees_changes_made_while_it_is_open(custom, namespace):
    events = []
    w = watch.Watch()

    def writer():
        time.sleep(0.3)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, VMS, make_vm("live"))
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, VMS, "live")

    thread = threading.Thread(target=writer)
    thread.start()
    for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, VMS, timeout_seconds=5):
        events.append(event["type"])
        if event["type"] == "DELETED":
            w.stop()
    thread.join()
    assert events == ["ADDED", "DELETED"]


def test_watch_from_a_compacted_resource_version_is_410_gone(private_api):
    api_client = config.new_client_from_config(config_file=str(private_api.kubeconfig))
    custom = client.CustomObjectsApi(api_client)
    try:
        first = custom.create_namespaced_custom_object(GROUP, VERSION, "default", VMS, make_vm("busy"))
        for i in range(15):  # the store keeps 10 revisions per key: the early ones are compacted away
            custom.patch_namespaced_custom_object(GROUP, VERSION, "default", VMS, "busy",
                                                  {"metadata": {"labels": {"n": str(i)}}})
        with pytest.raises(ApiException) as err:
            for _ in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", VMS,
                                          resource_version=first["metadata"]["resourceVersion"], timeout_seconds=2):
                pass
        assert err.value.status == 410
    finally:
        api_client.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writers=st.integers(min_value=2, max_value=6), delay_ms=st.lists(st.integers(0, 5), min_size=6, max_size=6))
def test_concurrent_updates_from_one_resource_version_have_one_winner(api, writers, delay_ms):
    """Many clients PUT from the same resourceVersion at once: exactly one 200, the rest 409, and
    the stored object is the winner's write (no lost or merged update)."""
    ns = f"race-{time.monotonic_ns()}"
    url = f"{api.url}/apis/{GROUP}/{VERSION}/namespaces/{ns}/{VMS}"
    session = api.session()
    base = session.post(url, json=make_vm("race")).json()
    results: dict[int, int] = {}

    def put(i: int) -> None:
        body = {**base, "metadata": {**base["metadata"], "labels": {"writer": str(i)}}}
        time.sleep(delay_ms[i] / 1000)
        s = api.session()
        results[i] = s.put(f"{url}/race", json=body).status_code

    threads = [threading.Thread(target=put, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, code in results.items() if code == 200]
    assert sorted(results.values()) == [200] + [409] * (writers - 1)
    stored = session.get(f"{url}/race").json()
    assert stored["metadata"]["labels"] == {"writer": str(winners[0])}
    assert int(stored["metadata"]["resourceVersion"]) > int(base["metadata"]["resourceVersion"])
