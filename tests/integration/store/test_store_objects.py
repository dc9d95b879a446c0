"""ObjectStore create/get/list/update/delete semantics against a real nats-server."""

from __future__ import annotations

import re

import pytest
from store_objects import make_vm, make_vmi_owned_by

from shared.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound
from shared.store import ObjectStore

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"


async def test_create_fills_server_metadata_and_get_returns_the_same_object(object_store: ObjectStore):
    created = await object_store.create(VMS, make_vm("web.example"))
    meta = created["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) >= 1
    assert await object_store.get(VMS, "default", "web.example") == created


async def test_create_of_an_existing_name_is_already_exists_and_keeps_the_first(object_store: ObjectStore):
    first = await object_store.create(VMS, make_vm("a"))
    with pytest.raises(AlreadyExists) as err:
        await object_store.create(VMS, make_vm("a", running=True))
    assert err.value.code == 409
    assert str(err.value) == 'virtualmachines.kubevirt.io "a" already exists'
    assert await object_store.get(VMS, "default", "a") == first


async def test_same_name_in_other_namespace_is_another_object(object_store: ObjectStore):
    a = await object_store.create(VMS, make_vm("a", "ns1"))
    b = await object_store.create(VMS, make_vm("a", "ns2"))
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    items, _ = await object_store.list(VMS)
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in items] == [("ns1", "a"), ("ns2", "a")]


async def test_create_after_delete_of_the_same_name_works(object_store: ObjectStore):
    first = await object_store.create(VMS, make_vm("again"))
    await object_store.delete(VMS, "default", "again")
    second = await object_store.create(VMS, make_vm("again"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_generate_name_gets_five_random_characters(object_store: ObjectStore):
    created = await object_store.create(VMS, make_vm(None, generateName="vm-"))
    assert re.fullmatch(r"vm-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])
    assert await object_store.get(VMS, "default", created["metadata"]["name"]) == created


async def test_create_without_name_or_generate_name_is_invalid(object_store: ObjectStore):
    with pytest.raises(Invalid) as err:
        await object_store.create(VMS, make_vm(None))
    assert err.value.causes[0].field == "metadata.name"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("plain", id="plain"),
        pytest.param("with.dots.in-it", id="dots"),
        pytest.param("under_score", id="underscore"),
        pytest.param("_kv-looking", id="reserved-prefix"),
        pytest.param("ünïcode", id="unicode"),
    ],
)
async def test_names_that_would_break_nats_keys_round_trip(object_store: ObjectStore, name: str):
    await object_store.create(VMS, make_vm(name, namespace="ns.with.dots"))
    got = await object_store.get(VMS, "ns.with.dots", name)
    assert got["metadata"]["name"] == name
    items, _ = await object_store.list(VMS, "ns.with.dots")
    assert [o["metadata"]["name"] for o in items] == [name]


async def test_cluster_scoped_objects_have_no_namespace(object_store: ObjectStore):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node01", "namespace": "ignored"}}
    created = await object_store.create("nodes", node, namespaced=False)
    assert "namespace" not in created["metadata"]
    assert await object_store.get("nodes", None, "node01") == created
    assert [o["metadata"]["name"] for o in (await object_store.list("nodes"))[0]] == ["node01"]
    labelled = {**created, "metadata": {**created["metadata"], "namespace": "stray", "labels": {"a": "b"}}}
    updated = await object_store.update("nodes", labelled, namespaced=False)
    assert updated["metadata"]["labels"] == {"a": "b"} and "namespace" not in updated["metadata"]


async def test_get_of_a_missing_object_is_not_found_in_kubernetes_words(object_store: ObjectStore):
    with pytest.raises(NotFound) as err:
        await object_store.get(VMS, "default", "x")
    assert str(err.value) == 'virtualmachines.kubevirt.io "x" not found'
    assert err.value.to_status()["details"] == {"name": "x", "group": "kubevirt.io", "kind": "virtualmachines"}


async def test_update_with_stale_resource_version_conflicts_and_leaves_object_unchanged(object_store: ObjectStore):
    created = await object_store.create(VMS, make_vm("a"))
    fresh = await object_store.update(VMS, {**created, "spec": {"running": True}})
    with pytest.raises(Conflict) as err:
        await object_store.update(VMS, {**created, "spec": {"running": False, "x": 1}})
    assert str(err.value) == (
        'Operation cannot be fulfilled on virtualmachines.kubevirt.io "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert await object_store.get(VMS, "default", "a") == fresh


async def test_update_without_resource_version_replaces_the_latest(object_store: ObjectStore):
    created = await object_store.create(VMS, make_vm("a"))
    body = {**created, "metadata": {k: v for k, v in created["metadata"].items() if k != "resourceVersion"}}
    updated = await object_store.update(VMS, {**body, "spec": {"running": True}})
    assert updated["spec"] == {"running": True}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_update_of_a_missing_object_is_not_found(object_store: ObjectStore):
    with pytest.raises(NotFound):
        await object_store.update(VMS, make_vm("ghost"))


@pytest.mark.parametrize(
    ("change", "generation"),
    [
        pytest.param(lambda o: o["spec"].update(running=True), 2, id="spec-change-bumps"),
        pytest.param(lambda o: o["metadata"].setdefault("labels", {}).update(a="b"), 1, id="label-change-keeps"),
        pytest.param(lambda o: o.update(status={"ready": True}), 1, id="status-change-keeps"),
    ],
)
async def test_generation_is_bumped_only_by_spec_changes(object_store: ObjectStore, change, generation: int):
    obj = await object_store.create(VMS, make_vm("g"))
    change(obj)
    updated = await object_store.update(VMS, obj, has_status_subresource=False)
    assert updated["metadata"]["generation"] == generation


async def test_main_resource_update_keeps_stored_status_and_status_update_keeps_spec(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("s"))
    with_status = await object_store.update(VMS, {**obj, "status": {"ready": True}}, subresource="status")
    assert with_status["status"] == {"ready": True}
    assert with_status["spec"] == obj["spec"]

    main = await object_store.update(VMS, {**with_status, "spec": {"running": True}, "status": {"ready": False}})
    assert main["status"] == {"ready": True}
    assert main["spec"] == {"running": True}

    status_only = await object_store.update(
        VMS, {**main, "spec": {"running": False}, "status": {"ready": False}}, subresource="status"
    )
    assert status_only["spec"] == {"running": True}
    assert status_only["status"] == {"ready": False}
    assert status_only["metadata"]["generation"] == main["metadata"]["generation"]


async def test_update_cannot_change_server_owned_metadata(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("m"))
    forged = {**obj, "metadata": {**obj["metadata"], "creationTimestamp": "2000-01-01T00:00:00Z", "generation": 99}}
    updated = await object_store.update(VMS, forged)
    for key in ("uid", "creationTimestamp", "generation"):
        assert updated["metadata"][key] == obj["metadata"][key]


@pytest.mark.parametrize("subresource", [None, "status"])
async def test_update_naming_another_uid_conflicts_and_changes_nothing(object_store: ObjectStore, subresource):
    obj = await object_store.create(VMS, make_vm("u"))
    forged = {**obj, "metadata": {**obj["metadata"], "uid": "forged"}, "spec": {"running": True}}
    with pytest.raises(Conflict) as err:
        await object_store.update(VMS, forged, subresource=subresource)
    assert str(err.value) == f"Precondition failed: UID in precondition: forged, UID in object meta: {obj['metadata']['uid']}"
    assert await object_store.get(VMS, "default", "u") == obj


async def test_no_op_update_keeps_the_resource_version(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("n"))
    assert await object_store.update(VMS, obj) == obj


async def test_delete_removes_and_returns_the_last_state_with_the_delete_revision(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("d"))
    gone = await object_store.delete(VMS, "default", "d")
    assert gone["metadata"]["uid"] == obj["metadata"]["uid"]
    assert int(gone["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    with pytest.raises(NotFound):
        await object_store.get(VMS, "default", "d")
    with pytest.raises(NotFound):
        await object_store.delete(VMS, "default", "d")


async def test_delete_with_stale_precondition_conflicts(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("p"))
    await object_store.update(VMS, {**obj, "spec": {"running": True}})
    with pytest.raises(Conflict) as err:
        await object_store.delete(VMS, "default", "p", precondition_rv=obj["metadata"]["resourceVersion"])
    assert "Precondition" in str(err.value) or "precondition" in str(err.value)
    await object_store.get(VMS, "default", "p")


async def test_finalizers_make_deletion_graceful_until_they_are_removed(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("f", finalizers=["kubevirt.io/virtualMachineControllerFinalize"]))
    deleting = await object_store.delete(VMS, "default", "f", grace_period_seconds=30)
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30
    assert deleting["metadata"]["generation"] == obj["metadata"]["generation"] + 1
    assert await object_store.get(VMS, "default", "f") == deleting
    # deleting again changes nothing
    assert await object_store.delete(VMS, "default", "f") == deleting

    with pytest.raises(Invalid):
        await object_store.update(VMS, {**deleting, "metadata": {**deleting["metadata"],
                                                                  "finalizers": ["a", "b"]}})
    done = {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}}
    await object_store.update(VMS, done)
    with pytest.raises(NotFound):
        await object_store.get(VMS, "default", "f")


async def test_deleting_an_owner_deletes_its_dependents_in_other_buckets(object_store: ObjectStore):
    vm = await object_store.create(VMS, make_vm("owner"))
    await object_store.create(VMIS, make_vmi_owned_by(vm))
    unrelated = await object_store.create(VMIS, make_vm("other") | {"kind": "VirtualMachineInstance"})
    await object_store.delete(VMS, "default", "owner")
    with pytest.raises(NotFound):
        await object_store.get(VMIS, "default", "owner")
    assert await object_store.get(VMIS, "default", "other") == unrelated


async def test_cascade_waits_for_an_owner_with_finalizers_to_be_removed(object_store: ObjectStore):
    vm = await object_store.create(VMS, make_vm("owner", finalizers=["x"]))
    await object_store.create(VMIS, make_vmi_owned_by(vm))
    deleting = await object_store.delete(VMS, "default", "owner")
    await object_store.get(VMIS, "default", "owner")  # still there while the owner finalizes
    await object_store.update(VMS, {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}})
    with pytest.raises(NotFound):
        await object_store.get(VMIS, "default", "owner")


async def test_orphan_propagation_keeps_dependents_without_the_owner_reference(object_store: ObjectStore):
    vm = await object_store.create(VMS, make_vm("owner"))
    await object_store.create(VMIS, make_vmi_owned_by(vm))
    await object_store.delete(VMS, "default", "owner", propagation_policy="Orphan")
    vmi = await object_store.get(VMIS, "default", "owner")
    assert "ownerReferences" not in vmi["metadata"]


async def test_dependent_with_another_owner_only_loses_the_reference(object_store: ObjectStore):
    a = await object_store.create(VMS, make_vm("a"))
    b = await object_store.create(VMS, make_vm("b"))
    vmi = make_vmi_owned_by(a, name="shared")
    vmi["metadata"]["ownerReferences"] += make_vmi_owned_by(b)["metadata"]["ownerReferences"]
    await object_store.create(VMIS, vmi)
    await object_store.delete(VMS, "default", "a")
    kept = await object_store.get(VMIS, "default", "shared")
    assert [r["uid"] for r in kept["metadata"]["ownerReferences"]] == [b["metadata"]["uid"]]


async def test_cascade_is_transitive(object_store: ObjectStore):
    vm = await object_store.create(VMS, make_vm("top"))
    vmi = await object_store.create(VMIS, make_vmi_owned_by(vm))
    await object_store.create("virtualmachineinstancemigrations", make_vmi_owned_by(vmi) | {"kind": "X"})
    await object_store.delete(VMS, "default", "top")
    with pytest.raises(NotFound):
        await object_store.get("virtualmachineinstancemigrations", "default", "top")


@pytest.mark.parametrize(
    ("label_selector", "field_selector", "expected"),
    [
        pytest.param(None, None, ["a", "b", "c"], id="everything"),
        pytest.param("app=web", None, ["a", "b"], id="equals"),
        pytest.param("app!=web", None, ["c"], id="not-equals-includes-unlabelled"),
        pytest.param("tier in (front,back)", None, ["a", "b"], id="in"),
        pytest.param("tier notin (front)", None, ["b", "c"], id="notin"),
        pytest.param("tier", None, ["a", "b"], id="exists"),
        pytest.param("!tier", None, ["c"], id="not-exists"),
        pytest.param("app=web,tier=back", None, ["b"], id="and"),
        pytest.param(None, "metadata.name=b", ["b"], id="field-name"),
        pytest.param(None, "metadata.name!=b", ["a", "c"], id="field-name-not"),
        pytest.param("app=web", "metadata.namespace=default", ["a", "b"], id="both"),
    ],
)
async def test_list_applies_selectors(object_store: ObjectStore, label_selector, field_selector, expected):
    await object_store.create(VMS, make_vm("a", labels={"app": "web", "tier": "front"}))
    await object_store.create(VMS, make_vm("b", labels={"app": "web", "tier": "back"}))
    await object_store.create(VMS, make_vm("c"))
    items, _ = await object_store.list(VMS, "default", label_selector=label_selector, field_selector=field_selector)
    assert [o["metadata"]["name"] for o in items] == expected


@pytest.mark.parametrize(
    ("label_selector", "field_selector"),
    [
        pytest.param("a b", None, id="label-missing-operator"),
        pytest.param("a in b", None, id="label-in-without-parens"),
        pytest.param(None, "spec.running=true", id="field-unknown"),
    ],
)
async def test_bad_selectors_are_bad_request(object_store: ObjectStore, label_selector, field_selector):
    with pytest.raises(BadRequest):
        await object_store.list(VMS, label_selector=label_selector, field_selector=field_selector)
    with pytest.raises(BadRequest):
        object_store.watch(VMS, label_selector=label_selector, field_selector=field_selector)


async def test_list_resource_version_is_the_bucket_revision(object_store: ObjectStore):
    _, empty_rv = await object_store.list(VMS)
    a = await object_store.create(VMS, make_vm("a"))
    await object_store.create(VMS, make_vm("b", namespace="other"))
    items, rv = await object_store.list(VMS, "default")
    assert [o["metadata"]["name"] for o in items] == ["a"]
    assert int(rv) >= int(a["metadata"]["resourceVersion"]) > int(empty_rv)


async def test_no_op_update_from_a_stale_resource_version_conflicts(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("n"))
    await object_store.update(VMS, {**obj, "spec": {"running": True}})
    with pytest.raises(Conflict):
        await object_store.update(VMS, obj)


async def test_stale_update_from_another_client_conflicts(object_store: ObjectStore, nats_server):
    other = await ObjectStore.connect([nats_server.url], bucket_prefix=object_store.prefix)
    try:
        obj = await object_store.create(VMS, make_vm("two"))
        await other.update(VMS, {**obj, "spec": {"running": True}})
        with pytest.raises(Conflict):
            await object_store.update(VMS, {**obj, "spec": {"running": False, "x": 1}})
        with pytest.raises(Conflict):
            await object_store.update(VMS, obj)  # a no-op from the stale version too
        assert (await object_store.get(VMS, "default", "two"))["spec"] == {"running": True}
    finally:
        await other.close()


async def test_removing_the_last_finalizer_returns_the_deletion_revision(object_store: ObjectStore):
    obj = await object_store.create(VMS, make_vm("f", finalizers=["x"]))
    deleting = await object_store.delete(VMS, "default", "f")
    removed = await object_store.update(VMS, {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}})
    assert int(removed["metadata"]["resourceVersion"]) > int(deleting["metadata"]["resourceVersion"])
    assert removed["metadata"]["uid"] == obj["metadata"]["uid"]


async def test_owner_reference_added_by_update_is_cascaded(object_store: ObjectStore):
    vm = await object_store.create(VMS, make_vm("owner"))
    vmi = await object_store.create(VMIS, make_vm("adopted") | {"kind": "VirtualMachineInstance"})
    adopted = make_vmi_owned_by(vm, name="adopted")
    adopted["metadata"]["resourceVersion"] = vmi["metadata"]["resourceVersion"]
    await object_store.update(VMIS, adopted)
    await object_store.delete(VMS, "default", "owner")
    with pytest.raises(NotFound):
        await object_store.get(VMIS, "default", "adopted")


async def test_garbage_collection_finishes_a_cascade_a_crash_interrupted(object_store: ObjectStore):
    from shared.store.keys import compute_bucket, compute_key

    vm = await object_store.create(VMS, make_vm("crashed"))
    await object_store.create(VMIS, make_vmi_owned_by(vm))
    alive = await object_store.create(VMS, make_vm("alive"))
    kept = await object_store.create(VMIS, make_vmi_owned_by(alive))
    # what a process killed between removing the owner and deleting its dependents leaves behind
    await object_store.kv.write(compute_bucket(object_store.prefix, VMS), compute_key("default", "crashed"), b"{}",
                                expected=int(vm["metadata"]["resourceVersion"]), delete=True)
    await object_store.get(VMIS, "default", "crashed")

    assert await object_store.collect_garbage() == 1
    with pytest.raises(NotFound):
        await object_store.get(VMIS, "default", "crashed")
    assert await object_store.get(VMIS, "default", "alive") == kept
    assert await object_store.collect_garbage() == 0


async def test_an_object_over_the_message_limit_is_request_too_large(object_store: ObjectStore):
    from shared.errors import RequestTooLarge

    huge = {**make_vm("huge"), "spec": {"blob": "x" * (9 * 1024 * 1024)}}
    with pytest.raises(RequestTooLarge) as err:
        await object_store.create(VMS, huge)
    assert err.value.code == 413
    with pytest.raises(NotFound):
        await object_store.get(VMS, "default", "huge")


async def test_maintenance_loop_compacts_and_collects(object_store: ObjectStore):
    import asyncio

    await object_store.create(VMS, make_vm("a"))
    await object_store.delete(VMS, "default", "a")
    task = asyncio.create_task(object_store.run_maintenance(interval=0.05, keep_deleted=0))
    try:
        async with asyncio.timeout(5):
            while await object_store.compaction_watermark(VMS) == 0:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert await object_store.compact(VMS, older_than=0) == 0
