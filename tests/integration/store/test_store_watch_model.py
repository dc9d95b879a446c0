"""Model-based property: for any sequence of creates/updates/deletes and any start revision, a
watch (with or without a label selector) delivers exactly the events a reference model of
Kubernetes' watch semantics predicts — same types, objects and resourceVersions, in order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_objects import make_vm

from shared.errors import AlreadyExists, NotFound
from shared.natsserver import NatsServer
from shared.store import ObjectStore

VMS = "virtualmachines"
NAMES = ("a", "b", "c")


@dataclass(frozen=True)
class Done:
    """One successful operation: kind (create/update/delete), name, label after it, revision."""

    op: str
    name: str
    label: str
    rv: str


def compute_expected(log: list[Done], start: int, selector: str | None) -> list[tuple[str, str, str]]:
    """Reference model: events a watch from after ``log[start - 1]`` sees, as (type, name, rv)."""
    def passes(label: str) -> bool:
        return selector is None or selector == f"app={label}"

    label_of: dict[str, str] = {}
    for done in log[:start]:
        if done.op == "delete":
            label_of.pop(done.name, None)
        else:
            label_of[done.name] = done.label
    events = []
    for done in log[start:]:
        was = done.name in label_of and passes(label_of[done.name])
        if done.op == "delete":
            label_of.pop(done.name)
            if was:
                events.append(("DELETED", done.name, done.rv))
            continue
        label_of[done.name] = done.label
        now = passes(done.label)
        if now:
            events.append(("MODIFIED" if was else "ADDED", done.name, done.rv))
        elif was:
            events.append(("DELETED", done.name, done.rv))
    return events


operations = st.lists(
    st.tuples(st.sampled_from(["create", "update", "delete"]), st.sampled_from(NAMES), st.sampled_from(["x", "y"])),
    min_size=1, max_size=25,
)


@pytest.fixture
async def deep_store(nats_server: NatsServer) -> AsyncIterator[ObjectStore]:
    store = await ObjectStore.connect([nats_server.url], bucket_prefix=f"m{uuid.uuid4().hex[:8]}_", history=64)
    try:
        yield store
    finally:
        await store.close()


async def apply_operations(store: ObjectStore, namespace: str, ops) -> list[Done]:
    log: list[Done] = []
    for op, name, label in ops:
        try:
            if op == "create":
                obj = await store.create(VMS, make_vm(name, namespace, labels={"app": label}))
            elif op == "update":
                current = await store.get(VMS, namespace, name)
                current["metadata"]["labels"] = {"app": label}
                current["spec"] = {"n": len(log)}  # always a real change
                obj = await store.update(VMS, current)
            else:
                obj = await store.delete(VMS, namespace, name)
                label = obj["metadata"]["labels"]["app"]
        except (AlreadyExists, NotFound):
            continue
        log.append(Done(op, name, label, obj["metadata"]["resourceVersion"]))
    return log


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, start_fraction=st.floats(0, 1), selector=st.sampled_from([None, "app=x"]))
async def test_watch_matches_the_reference_model(deep_store: ObjectStore, ops, start_fraction, selector):
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    _, before = await deep_store.list(VMS, namespace)
    log = await apply_operations(deep_store, namespace, ops)
    start = int(start_fraction * len(log))
    start_rv = log[start - 1].rv if start else before
    expected = compute_expected(log, start, selector)

    stream = deep_store.watch(VMS, namespace, resource_version=start_rv, label_selector=selector,
                              bookmark_interval=0.05)
    got: list[tuple[str, str, str]] = []
    last_rv = log[-1].rv if log else before
    async with asyncio.timeout(10):
        while True:  # read until a bookmark proves the watch has caught up with the last write
            event = await anext(stream)
            rv = event.object["metadata"]["resourceVersion"]
            if event.type == "BOOKMARK":
                if int(rv) >= int(last_rv):
                    break
                continue
            got.append((event.type, event.object["metadata"]["name"], rv))
    await stream.aclose()
    assert got == expected
