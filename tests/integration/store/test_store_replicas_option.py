"""``--store-replicas``: the buckets and the trace stream a service creates through
``ServiceContext.connect_store`` get that many JetStream replicas on a three-node cluster."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from store_objects import make_vm

from shared import trace_store, tracing
from shared.natsserver import NatsCluster
from shared.service import CommonSettings, ServiceContext


async def test_buckets_and_trace_stream_have_the_replicas_asked_for(nats_cluster: NatsCluster):
    settings = CommonSettings("svc", tuple(nats_cluster.urls), bucket_prefix="rep_", store_replicas=3)
    tracing.use_in_memory_exporter()  # tracing on: connect_store attaches the trace store
    try:
        async with AsyncExitStack() as exits:
            store = await ServiceContext(settings, asyncio.Event(), exits).connect_store()
            await store.create("virtualmachines", make_vm("vm-r3"))
            js = store.bus.jetstream()
            bucket = await js.stream_info("KV_rep_virtualmachines")
            traces = await js.stream_info(trace_store.compute_stream_name("rep_"))
            assert bucket.config.num_replicas == 3 and len(bucket.cluster.replicas or []) == 2
            assert traces.config.num_replicas == 3 and len(traces.cluster.replicas or []) == 2
            assert traces.config.subjects == ["rep_traces.>"]
    finally:
        tracing.reset()
