"""The informer cache: read-your-writes (assume), stale and late watch events ignored."""
import asyncio

import pytest

from shared.api.node import Node
from shared.api.vmi import VirtualMachineInstance
from shared.informer import Informer, key_of, split_key


def obj(name, uid, rv, phase=""):
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)},
            "status": {"phase": phase}}


def make():
    informer = Informer(store=None, plural="virtualmachineinstances")
    seen = []
    informer.add_handler(lambda old, new: seen.append(((old or {}).get("metadata", {}).get("resourceVersion"),
                                                       (new or {}).get("metadata", {}).get("resourceVersion"))))
    return informer, seen


def test_assumed_write_is_visible_at_once_and_its_watch_echo_is_skipped():
    informer, seen = make()
    informer.apply_event("ADDED", obj("a", "u1", 5))
    informer.assume(obj("a", "u1", 9, "Scheduling"))
    assert informer.get("ns/a")["status"]["phase"] == "Scheduling"
    informer.apply_event("MODIFIED", obj("a", "u1", 7))  # an older change arriving late
    informer.apply_event("MODIFIED", obj("a", "u1", 9, "Scheduling"))  # our own write's echo
    assert informer.get("ns/a")["metadata"]["resourceVersion"] == "9"
    assert seen == [(None, "5"), ("5", "9")]


def test_deleted_object_does_not_come_back_from_late_events_and_a_new_one_of_the_same_name_is_kept():
    informer, _ = make()
    informer.apply_event("ADDED", obj("a", "u1", 5))
    informer.assume_deleted(obj("a", "u1", 5))
    informer.apply_event("MODIFIED", obj("a", "u1", 6))
    assert informer.get("ns/a") is None
    informer.assume(obj("a", "u2", 10))  # recreated under the same name
    informer.apply_event("DELETED", obj("a", "u1", 6))  # the old one's deletion arrives
    assert informer.get("ns/a")["metadata"]["uid"] == "u2"


def test_keys():
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node1") == (None, "node1")


def removed_by_store(name, uid, rv):
    gone = obj(name, uid, rv, "Succeeded")
    gone["metadata"]["deletionTimestamp"] = "2026-12-02T09:00:00Z"
    return gone


@pytest.mark.parametrize("stored, expected_rv", [
    pytest.param(obj("a", "u1", 8, "Running"), "8", id="written-object-is-cached"),
    pytest.param(None, None, id="object-already-gone-is-dropped"),
    pytest.param(removed_by_store("a", "u1", 8), None, id="last-finalizer-removed-is-dropped"),
])
def test_the_answer_of_a_write_is_folded_into_the_cache(stored, expected_rv):
    informer, _ = make()
    before = obj("a", "u1", 5)
    informer.apply_event("ADDED", before)
    informer.assume_written(before, stored)
    cached = informer.get("ns/a")
    assert (cached or {}).get("metadata", {}).get("resourceVersion") == expected_rv


# -- typed informers: objects decoded once into the shared.api Structs ---------------------------------


def vmi(name, uid, rv, phase=None, **spec_extra):
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)},
            "spec": {"domain": {"devices": {}}, **spec_extra}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def make_typed():
    informer = Informer(store=None, plural="virtualmachineinstances", decode=VirtualMachineInstance)
    seen = []
    informer.add_handler(lambda old, new: seen.append((old, new)))
    return informer, seen


def test_a_typed_informer_hands_structs_to_handlers_and_getters():
    informer, seen = make_typed()
    informer.apply_event("ADDED", vmi("a", "u1", 5, "Pending"))
    cached = informer.get("ns/a")
    assert isinstance(cached, VirtualMachineInstance)
    assert cached.status.phase == "Pending" and cached.metadata.resource_version == "5"
    assert seen == [(None, cached)]


def test_a_typed_informer_keeps_the_dict_rules_stale_assumed_and_deleted():
    informer, seen = make_typed()
    informer.apply_event("ADDED", vmi("a", "u1", 5))
    informer.assume(vmi("a", "u1", 9, "Scheduling"))  # a dict written by this process
    informer.apply_event("MODIFIED", vmi("a", "u1", 7))
    assert informer.get("ns/a").status.phase == "Scheduling"
    informer.assume_deleted(informer.get("ns/a"))
    informer.apply_event("MODIFIED", vmi("a", "u1", 10))
    assert informer.get("ns/a") is None
    assert [(o and o.metadata.resource_version, n and n.metadata.resource_version) for o, n in seen] == \
        [(None, "5"), ("5", "9"), ("9", None)]


def test_a_typed_informer_cleans_what_the_api_would_and_skips_what_does_not_fit():
    informer, seen = make_typed()
    loose = vmi("a", "u1", 5, nodeSelector={"zone": None, "disk": "ssd"})  # null = unset, as Go decodes it
    loose["spec"]["domain"]["resources"] = {"requests": {"cpu": 2}}
    informer.apply_event("ADDED", loose)
    assert informer.get("ns/a").spec.node_selector == {"disk": "ssd"}
    assert informer.get("ns/a").spec.domain.resources.requests == {"cpu": "2"}  # quantities as strings
    informer.apply_event("ADDED", {"metadata": {"name": "b", "namespace": "ns", "uid": "u2"}})  # no spec
    assert informer.get("ns/b") is None and len(seen) == 1


def test_a_typed_informer_of_cluster_scoped_objects_keys_by_name():
    informer = Informer(None, "nodes", decode=Node)
    informer.replace([{"metadata": {"name": "node1", "uid": "n1", "resourceVersion": "3"},
                       "status": {"allocatable": {"cpu": "4"}}}], "3")
    assert informer.has_synced() and informer.keys() == ["node1"]
    assert informer.get_by_name(None, "node1").status == {"allocatable": {"cpu": "4"}}
    assert key_of(informer.get("node1")) == "node1"


class FakeEvent:
    def __init__(self, type_, obj):
        self.type, self.object = type_, obj


class FakeStore:
    """list answers the current items; the first watch breaks with an ERROR (410), the second
    delivers one change and then waits."""

    def __init__(self):
        self.items = {"a": vmi("a", "u1", 5), "b": vmi("b", "u2", 6)}
        self.watches = []
        self.forever = asyncio.Event()

    async def list(self, plural, namespace=None, *, label_selector=None, field_selector=None):
        return list(self.items.values()), str(max(int(o["metadata"]["resourceVersion"]) for o in self.items.values()))

    def watch(self, plural, namespace=None, *, resource_version=None, label_selector=None, field_selector=None):
        self.watches.append(resource_version)
        return self._events(len(self.watches))

    async def _events(self, n):
        if n == 1:
            self.items.pop("b")  # deleted while nobody watched
            self.items["a"] = vmi("a", "u1", 8, "Scheduling")
            yield FakeEvent("ERROR", {"kind": "Status", "code": 410})
        else:
            yield FakeEvent("MODIFIED", vmi("a", "u1", 9, "Scheduled"))
            await self.forever.wait()


async def test_the_informer_lists_watches_from_the_list_and_relists_after_an_error():
    store = FakeStore()
    informer = Informer(store, "virtualmachineinstances", decode=VirtualMachineInstance)
    seen = []
    informer.add_handler(lambda old, new: seen.append((old and old.metadata.name, new and new.metadata.resource_version)))
    informer.start()
    try:
        await informer.wait_synced(5)
        for _ in range(100):
            if informer.resource_version == "9":
                break
            await asyncio.sleep(0.01)
    finally:
        await informer.stop()
    assert store.watches == ["6", "8"]  # each watch starts at its list's resourceVersion
    assert informer.relists == 1
    assert informer.keys() == ["ns/a"] and informer.get("ns/a").status.phase == "Scheduled"
    assert seen == [(None, "5"), (None, "6"), ("a", "8"), ("b", None), ("a", "9")]


class _EncodedStore:
    """A store whose watch sends events still encoded (as ``shared.store`` does without selectors)."""

    def __init__(self, events):
        self.events = events

    async def list(self, plural, namespace=None, *, label_selector=None, field_selector=None):
        return [], "1"

    async def watch(self, plural, namespace=None, *, resource_version=None, label_selector=None,
                    field_selector=None):
        for event in self.events:
            yield event
        await asyncio.sleep(3600)


async def test_typed_informer_decodes_encoded_events_straight_into_structs():
    import msgspec

    from shared.store.watch import WatchEvent

    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1"}, "spec": {"domain": {"devices": {}}},
            "status": {"phase": "Pending"}}
    odd = {"metadata": {"name": "b", "namespace": "ns", "uid": "u2"}}  # no spec: not a VMI, ignored
    store = _EncodedStore([WatchEvent("ADDED", value=msgspec.json.encode(body), revision=4),
                           WatchEvent("ADDED", value=msgspec.json.encode(odd), revision=5)])
    informer = Informer(store, "virtualmachineinstances", decode=VirtualMachineInstance)
    informer.start()
    try:
        for _ in range(100):
            if informer.resource_version == "5":
                break
            await asyncio.sleep(0.01)
        a = informer.get("ns/a")
        assert isinstance(a, VirtualMachineInstance) and a.metadata.resource_version == "4"
        assert a.status.phase == "Pending"
        assert informer.get("ns/b") is None and informer.resource_version == "5"
    finally:
        await informer.stop()
