"""The informer cache: read-your-writes (assume), stale and late watch events ignored."""
import pytest

from services.virt_controller.informer import Informer, split_key


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
