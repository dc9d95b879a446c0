"""Store benchmark: ObjectStore vs raw JetStream KV (the floor) on one local nats-server.

Operations, each at 1 and 16 concurrent clients (one NATS connection per client):
  create+get   create an object then read it back (latency of the pair)
  list-1000    list a bucket holding 1,000 objects
  watch-fanout 10 watchers; writers update objects; latency from the write to each delivery
Prints p50/p99 latency (ms), throughput (ops/s) and the ratio ObjectStore / raw KV.
The server runs with ``sync_interval: always`` (every write fsynced) as in production.

Run: .venv/bin/python bench/store_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.bus import connect  # noqa: E402
from shared.natsserver import NatsServer  # noqa: E402
from shared.store import ObjectStore  # noqa: E402

VMS = "virtualmachines"
#: sizes of raw kv.watchall() lists that ended (None marker) before all 1,000 keys arrived
SHORT_RAW_LISTS: list[int] = []


def make_vm(name: str, **spec) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"cpu": {"cores": 1},
                 "memory": {"guest": "64Mi"}, "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
                 "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros"}}]}}, **spec},
    }


@dataclass
class Result:
    latencies: list[float]  # seconds
    elapsed: float  # seconds
    ops: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99(self) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed


async def run_clients(clients: int, per_client: int, op: Callable[[int, int], Awaitable[None]]) -> Result:
    latencies: list[float] = []

    async def client(c: int) -> None:
        for i in range(per_client):
            t = time.perf_counter()
            await op(c, i)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return Result(latencies, time.perf_counter() - t0, clients * per_client)


# -- ObjectStore ---------------------------------------------------------------------------------
async def store_create_get(url: str, clients: int, n: int) -> Result:
    prefix = f"b{uuid.uuid4().hex[:6]}_"
    stores = [await ObjectStore.connect([url], bucket_prefix=prefix) for _ in range(clients)]
    await stores[0].list(VMS)  # make the bucket outside the timing

    async def op(c: int, i: int) -> None:
        name = f"vm-{c}-{i}"
        await stores[c].create(VMS, make_vm(name))
        await stores[c].get(VMS, "default", name)

    try:
        return await run_clients(clients, n, op)
    finally:
        for s in stores:
            await s.close()


async def store_list(url: str, clients: int, n: int, size: int) -> Result:
    prefix = f"b{uuid.uuid4().hex[:6]}_"
    stores = [await ObjectStore.connect([url], bucket_prefix=prefix) for _ in range(clients)]
    sem = asyncio.Semaphore(32)

    async def fill(i: int) -> None:
        async with sem:
            await stores[0].create(VMS, make_vm(f"vm-{i}"))

    await asyncio.gather(*(fill(i) for i in range(size)))

    async def op(c: int, i: int) -> None:
        items, _ = await stores[c].list(VMS, "default")
        assert len(items) == size

    try:
        return await run_clients(clients, n, op)
    finally:
        for s in stores:
            await s.close()


async def store_watch(url: str, clients: int, n: int, watchers: int = 10) -> Result:
    prefix = f"b{uuid.uuid4().hex[:6]}_"
    stores = [await ObjectStore.connect([url], bucket_prefix=prefix) for _ in range(clients)]
    wstores = [await ObjectStore.connect([url], bucket_prefix=prefix) for _ in range(watchers)]
    objs = [await stores[c].create(VMS, make_vm(f"vm-{c}", sent=0.0)) for c in range(clients)]
    _, rv = await stores[0].list(VMS)
    expected = clients * n * watchers
    delivered: list[float] = []
    all_seen = asyncio.Event()

    async def watcher(ws: ObjectStore) -> None:
        async for ev in ws.watch(VMS, "default", resource_version=rv):
            delivered.append(time.perf_counter() - ev.object["spec"]["sent"])
            if len(delivered) >= expected:
                all_seen.set()

    tasks = [asyncio.create_task(watcher(ws)) for ws in wstores]
    await asyncio.sleep(0.3)

    async def op(c: int, i: int) -> None:
        obj = objs[c]
        objs[c] = await stores[c].update(VMS, {**obj, "spec": {**obj["spec"], "sent": time.perf_counter()}})

    t0 = time.perf_counter()
    await run_clients(clients, n, op)
    await asyncio.wait_for(all_seen.wait(), 60)
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in stores + wstores:
        await s.close()
    return Result(delivered, elapsed, len(delivered))


# -- raw JetStream KV (nats-py) ------------------------------------------------------------------
async def raw_bucket(url: str, clients: int, auth: dict | None = None):
    """``clients`` connections (``auth``: bus.connect's credentials/tls_ca) and a fresh bucket."""
    buses = [await connect([url], name="bench-raw", **(auth or {})) for _ in range(clients)]
    bucket = f"raw{uuid.uuid4().hex[:6]}"
    await buses[0].jetstream().create_key_value(bucket=bucket, history=10, direct=False)
    kvs = [await b.jetstream().key_value(bucket) for b in buses]
    return buses, kvs


async def raw_create_get(url: str, clients: int, n: int, auth: dict | None = None) -> Result:
    buses, kvs = await raw_bucket(url, clients, auth)

    async def op(c: int, i: int) -> None:
        key = f"default.vm-{c}-{i}"
        await kvs[c].create(key, json.dumps(make_vm(key)).encode())
        json.loads((await kvs[c].get(key)).value)

    try:
        return await run_clients(clients, n, op)
    finally:
        for b in buses:
            await b.close()


async def raw_list_all(kv) -> list[dict]:
    """The idiomatic raw list: a watcher replaying the latest value of every key."""
    out = []
    watcher = await kv.watchall()
    async for entry in watcher:
        if entry is None:
            break
        out.append(json.loads(entry.value))
    await watcher.stop()
    return out


async def raw_list(url: str, clients: int, n: int, size: int, auth: dict | None = None) -> Result:
    buses, kvs = await raw_bucket(url, clients, auth)
    sem = asyncio.Semaphore(32)

    async def fill(i: int) -> None:
        async with sem:
            await kvs[0].create(f"default.vm-{i}", json.dumps(make_vm(f"vm-{i}")).encode())

    await asyncio.gather(*(fill(i) for i in range(size)))

    async def op(c: int, i: int) -> None:
        got = len(await raw_list_all(kvs[c]))
        if got != size:
            SHORT_RAW_LISTS.append(got)

    try:
        return await run_clients(clients, n, op)
    finally:
        for b in buses:
            await b.close()


async def raw_watch(url: str, clients: int, n: int, watchers: int = 10, auth: dict | None = None) -> Result:
    buses, kvs = await raw_bucket(url, clients, auth)
    wbuses = [await connect([url], name="bench-raw-w") for _ in range(watchers)]
    wkvs = [await b.jetstream().key_value(kvs[0]._name) for b in wbuses]
    revs = [await kvs[c].create(f"default.vm-{c}", json.dumps(make_vm("x", sent=0.0)).encode()) for c in range(clients)]
    expected = clients * n * watchers
    delivered: list[float] = []
    all_seen = asyncio.Event()

    async def watcher(kv) -> None:
        w = await kv.watchall()
        async for entry in w:
            if entry is None:
                continue
            sent = json.loads(entry.value)["spec"]["sent"]
            if sent:
                delivered.append(time.perf_counter() - sent)
                if len(delivered) >= expected:
                    all_seen.set()

    tasks = [asyncio.create_task(watcher(kv)) for kv in wkvs]
    await asyncio.sleep(0.3)

    async def op(c: int, i: int) -> None:
        revs[c] = await kvs[c].update(
            f"default.vm-{c}", json.dumps(make_vm("x", sent=time.perf_counter())).encode(), last=revs[c]
        )

    t0 = time.perf_counter()
    await run_clients(clients, n, op)
    await asyncio.wait_for(all_seen.wait(), 60)
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for b in buses + wbuses:
        await b.close()
    return Result(delivered, elapsed, len(delivered))


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        url = server.url
        try:
            print(f"nats-server {url} (sync_interval: always); latency ms, throughput ops/s")
            header = (f"{'operation':<13}{'clients':>8} | {'store p50':>9}{'p99':>8}{'ops/s':>9} | "
                      f"{'raw p50':>8}{'p99':>8}{'ops/s':>9} | {'p50 x':>6}{'ops/s x':>8}")
            print(header)
            print("-" * len(header))
            for clients in (1, 16):
                per = max(2, int((400 if clients == 1 else 40) * scale))
                lists = max(2, int((20 if clients == 1 else 4) * scale))
                watch_n = max(2, int((200 if clients == 1 else 15) * scale))
                cases = [
                    ("create+get", store_create_get(url, clients, per), raw_create_get(url, clients, per)),
                    ("list-1000", store_list(url, clients, lists, 1000), raw_list(url, clients, lists, 1000)),
                    ("watch-fanout", store_watch(url, clients, watch_n), raw_watch(url, clients, watch_n)),
                ]
                for label, store_coro, raw_coro in cases:
                    s = await store_coro
                    r = await raw_coro
                    print(f"{label:<13}{clients:>8} | {s.p50:>9.2f}{s.p99:>8.2f}{s.throughput:>9.0f} | "
                          f"{r.p50:>8.2f}{r.p99:>8.2f}{r.throughput:>9.0f} | "
                          f"{s.p50 / r.p50:>6.2f}{s.throughput / r.throughput:>8.2f}", flush=True)
            print("p50 x = ObjectStore p50 / raw p50 (lower is better); ops/s x = ObjectStore / raw throughput")
            print("ObjectStore lists come from its in-memory bucket mirror after the first one (shared/store/mirror.py)")
            if SHORT_RAW_LISTS:
                print(f"note: {len(SHORT_RAW_LISTS)} raw kv.watchall() lists ended early (sizes {SHORT_RAW_LISTS[:5]}...)")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the iterations")
    asyncio.run(main(parser.parse_args().quick))
