"""R3 on a three-node loopback cluster: writes, reads and a watch carry on when the bucket's
stream leader (and the node the client talks to) is killed with SIGKILL."""

from __future__ import annotations

import asyncio

from store_objects import make_vm

from shared.natsserver import NatsCluster
from shared.store import ObjectStore

VMS = "virtualmachines"


async def test_r3_bucket_survives_kill_of_its_leader(nats_cluster: NatsCluster):
    store = await ObjectStore.connect(nats_cluster.urls, replicas=3, bucket_prefix="r3_")
    try:
        first = await store.create(VMS, make_vm("vm-0"))
        info = await store.bus.jetstream().stream_info("KV_r3_virtualmachines")
        assert info.config.num_replicas == 3 and len(info.cluster.replicas or []) == 2
        stream = store.watch(VMS, resource_version=first["metadata"]["resourceVersion"])
        acked = {}
        for i in range(1, 6):
            acked[f"vm-{i}"] = (await store.create(VMS, make_vm(f"vm-{i}")))["metadata"]["resourceVersion"]

        leader = next(n for n in nats_cluster.nodes if n.server_name == info.cluster.leader)
        leader.stop(kill=True)
        for i in range(6, 11):
            acked[f"vm-{i}"] = (await store.create(VMS, make_vm(f"vm-{i}")))["metadata"]["resourceVersion"]

        seen = {}
        async with asyncio.timeout(20):
            while len(seen) < len(acked):
                event = await anext(stream)
                seen[event.object["metadata"]["name"]] = event.object["metadata"]["resourceVersion"]
        assert seen == acked
        items, _ = await store.list(VMS)
        assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in items} == {
            "vm-0": first["metadata"]["resourceVersion"], **acked
        }
        await stream.aclose()
    finally:
        await store.close()
