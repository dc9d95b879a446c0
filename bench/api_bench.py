"""virt-api benchmark: the HTTP API (TLS, token, admission, ObjectStore) vs raw JetStream KV (the floor).

Runs a real nats-server and a real virt-api process (as ``virtctl up`` does, in a temp state
directory) and drives them over HTTPS with aiohttp. Operations, at 1 and 16 concurrent clients:
  create+get    POST a VirtualMachine, then GET it (latency of the pair)
  list-1000     GET the list of a namespace holding 1,000 VirtualMachines
  watch-fanout  10 HTTP watches open; clients PATCH objects; latency from the PATCH being sent to
                each watcher receiving the event (10 deliveries per write)
The same operations on raw JetStream KV (nats-py, from bench/store_bench.py) are the floor.
Prints p50/p99 latency (ms), throughput (ops/s; deliveries/s for the watch) and the ratios
API / raw (p50: lower is better; ops/s: higher is better).

Run: .venv/bin/python bench/api_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import Result, raw_create_get, raw_list, raw_watch, run_clients  # noqa: E402

from services.virtctl import installation as inst  # noqa: E402
from shared.natsserver import pick_free_port  # noqa: E402

VMS = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines"


def make_vm(name: str) -> dict:
    """A small valid VirtualMachine (what a user would create)."""
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                       "resources": {"requests": {"memory": "64Mi"}}},
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}}]}}},
    }


class Api:
    """A running installation and an HTTP session factory for it."""

    def __init__(self, layout: inst.Layout) -> None:
        self.layout = layout
        self.token = layout.token_file.read_text().strip()

    def session(self) -> aiohttp.ClientSession:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.layout.ca_cert))
        return aiohttp.ClientSession(self.layout.api_url, headers={"Authorization": f"Bearer {self.token}"},
                                     connector=aiohttp.TCPConnector(ssl=ctx, limit=64))


async def expect(resp: aiohttp.ClientResponse, code: int) -> dict:
    body = await resp.json()
    if resp.status != code:
        raise RuntimeError(f"{resp.method} {resp.url}: {resp.status} {body}")
    return body


async def api_create_get(api: Api, clients: int, n: int) -> Result:
    ns = f"cg-{uuid.uuid4().hex[:6]}"
    async with api.session() as http:
        async def op(c: int, i: int) -> None:
            name = f"vm-{c}-{i}"
            async with http.post(VMS.format(ns=ns), json=make_vm(name)) as resp:
                await expect(resp, 201)
            async with http.get(VMS.format(ns=ns) + f"/{name}") as resp:
                await expect(resp, 200)

        return await run_clients(clients, n, op)


async def api_list(api: Api, clients: int, n: int, size: int) -> Result:
    ns = f"ls-{uuid.uuid4().hex[:6]}"
    async with api.session() as http:
        sem = asyncio.Semaphore(16)

        async def fill(i: int) -> None:
            async with sem, http.post(VMS.format(ns=ns), json=make_vm(f"vm-{i}")) as resp:
                await expect(resp, 201)

        await asyncio.gather(*(fill(i) for i in range(size)))

        async def op(c: int, i: int) -> None:
            async with http.get(VMS.format(ns=ns)) as resp:
                assert len((await expect(resp, 200))["items"]) == size

        return await run_clients(clients, n, op)


async def api_watch(api: Api, clients: int, n: int, watchers: int = 10) -> Result:
    ns = f"wt-{uuid.uuid4().hex[:6]}"
    expected = clients * n * watchers
    delivered: list[float] = []
    all_seen = asyncio.Event()
    async with api.session() as http:
        for c in range(clients):
            async with http.post(VMS.format(ns=ns), json=make_vm(f"vm-{c}")) as resp:
                await expect(resp, 201)
        async with http.get(VMS.format(ns=ns)) as resp:
            rv = (await expect(resp, 200))["metadata"]["resourceVersion"]

        async def watcher() -> None:
            async with http.get(VMS.format(ns=ns), params={"watch": "1", "resourceVersion": rv},
                                timeout=aiohttp.ClientTimeout(total=None)) as resp:
                async for line in resp.content:
                    event = json.loads(line)
                    sent = event["object"]["metadata"].get("annotations", {}).get("bench/sent")
                    if sent:
                        delivered.append(time.perf_counter() - float(sent))
                        if len(delivered) >= expected:
                            all_seen.set()

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.sleep(0.5)

        async def op(c: int, i: int) -> None:
            patch = {"metadata": {"annotations": {"bench/sent": repr(time.perf_counter())}}}
            async with http.patch(VMS.format(ns=ns) + f"/vm-{c}", data=json.dumps(patch),
                                  headers={"Content-Type": "application/merge-patch+json"}) as resp:
                await expect(resp, 200)

        t0 = time.perf_counter()
        await run_clients(clients, n, op)
        await asyncio.wait_for(all_seen.wait(), 120)
        elapsed = time.perf_counter() - t0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Result(delivered, elapsed, len(delivered))


async def run(api: Api, nats_url: str, quick: bool) -> None:
    # the raw floor reads and writes the installation's NATS as its admin user, over the same TLS
    auth = {"credentials": api.layout.nats_credentials("admin"), "tls_ca": api.layout.ca_cert}
    scale = 0.25 if quick else 1.0
    print(f"virt-api {api.layout.api_url} (TLS, token) on {nats_url} (sync_interval: always); "
          "latency ms, throughput ops/s")
    header = (f"{'operation':<13}{'clients':>8} | {'api p50':>8}{'p99':>8}{'ops/s':>9} | "
              f"{'raw p50':>8}{'p99':>8}{'ops/s':>9} | {'p50 x':>6}{'ops/s x':>8}")
    print(header)
    print("-" * len(header))
    for clients in (1, 16):
        per = max(2, int((300 if clients == 1 else 40) * scale))
        lists = max(2, int((20 if clients == 1 else 3) * scale))
        watch_n = max(2, int((200 if clients == 1 else 15) * scale))
        cases = [
            ("create+get", api_create_get(api, clients, per), raw_create_get(nats_url, clients, per, auth)),
            ("list-1000", api_list(api, clients, lists, 1000), raw_list(nats_url, clients, lists, 1000, auth)),
            ("watch-fanout", api_watch(api, clients, watch_n), raw_watch(nats_url, clients, watch_n, auth=auth)),
        ]
        for label, api_coro, raw_coro in cases:
            a = await api_coro
            r = await raw_coro
            print(f"{label:<13}{clients:>8} | {a.p50:>8.2f}{a.p99:>8.2f}{a.throughput:>9.0f} | "
                  f"{r.p50:>8.2f}{r.p99:>8.2f}{r.throughput:>9.0f} | "
                  f"{a.p50 / r.p50:>6.2f}{a.throughput / r.throughput:>8.2f}", flush=True)
    print("p50 x = API p50 / raw KV p50 (lower is better); ops/s x = API / raw KV throughput (higher is better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the iterations")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        layout = inst.load_layout(Path(tmp), api_port=pick_free_port())
        started = []
        try:
            for spec in (inst.NATS_SERVER, inst.VIRT_API):
                inst.wait_healthy(layout, spec, inst.launch(layout, spec))
                started.append(spec)
            asyncio.run(run(Api(layout), layout.nats_url, args.quick))
        finally:
            for spec in reversed(started):
                inst.stop(layout, spec)


if __name__ == "__main__":
    main()
