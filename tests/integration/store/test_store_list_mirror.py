"""Lists served from the in-memory bucket mirror: they see every write acknowledged before the
list started (also another client's), survive a server restart, and equal a direct read."""

from __future__ import annotations

import uuid

from store_objects import make_vm

from shared.natsserver import NatsServer
from shared.store import ObjectStore

VMS = "virtualmachines"


async def test_list_sees_another_clients_write_acknowledged_before_it(nats_server: NatsServer):
    prefix = f"mir{uuid.uuid4().hex[:8]}_"
    reader = await ObjectStore.connect([nats_server.url], bucket_prefix=prefix)
    writer = await ObjectStore.connect([nats_server.url], bucket_prefix=prefix)
    try:
        assert (await reader.list(VMS))[0] == []  # the reader's mirror is running from here on
        for i in range(20):
            created = await writer.create(VMS, make_vm(f"vm-{i}"))
            items, rv = await reader.list(VMS)
            assert created in items and int(rv) >= int(created["metadata"]["resourceVersion"])
        gone = await writer.delete(VMS, "default", "vm-3")
        items, rv = await reader.list(VMS, "default")
        assert "vm-3" not in {o["metadata"]["name"] for o in items}
        assert int(rv) >= int(gone["metadata"]["resourceVersion"])
    finally:
        await reader.close()
        await writer.close()


async def test_mirrored_and_direct_lists_agree(object_store: ObjectStore, nats_server: NatsServer):
    direct = await ObjectStore.connect([nats_server.url], bucket_prefix=object_store.prefix, mirror_lists=False)
    try:
        await object_store.list(VMS)
        for ns in ("a", "b.c"):
            for i in range(5):
                await object_store.create(VMS, make_vm(f"vm-{i}", ns, labels={"i": str(i % 2)}))
        await object_store.delete(VMS, "a", "vm-1")
        obj = await object_store.get(VMS, "b.c", "vm-2")
        await object_store.update(VMS, {**obj, "spec": {"running": True}})
        for args in [(None, None, None), ("a", None, None), ("b.c", "i=1", None), (None, None, "metadata.name=vm-2"),
                     ("b.c", None, "metadata.name=vm-2"), ("zzz", None, None)]:
            ns, labels, fields = args
            mirrored = await object_store.list(VMS, ns, label_selector=labels, field_selector=fields)
            read = await direct.list(VMS, ns, label_selector=labels, field_selector=fields)
            assert mirrored[0] == read[0], args
    finally:
        await direct.close()


async def test_mirror_catches_up_after_a_server_restart(fresh_nats_server: NatsServer):
    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix="mr_")
    try:
        await store.create(VMS, make_vm("before"))
        assert len((await store.list(VMS))[0]) == 1
        fresh_nats_server.stop(kill=True)
        fresh_nats_server.start()
        after = await store.create(VMS, make_vm("after"))
        items, rv = await store.list(VMS)
        assert [o["metadata"]["name"] for o in items] == ["after", "before"]
        assert int(rv) >= int(after["metadata"]["resourceVersion"])
    finally:
        await store.close()
