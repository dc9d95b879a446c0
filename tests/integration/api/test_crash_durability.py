"""``kill -9`` of virt-api, then of nats-server, in the middle of a stream of writes: every
acknowledged object is there after the restart with the resourceVersion it was acknowledged with,
and no half-written object exists."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from services.virtctl import installation as inst
from tests.integration.api.vm_factory import GROUP, VERSION, VMS, make_vm


async def write_stream(api, prefix: str, acked: dict[str, str], stop: asyncio.Event, concurrency: int = 4) -> int:
    """Create objects ``<prefix>-<n>`` until ``stop``; record name -> acknowledged resourceVersion.
    Returns the number of writes that failed (connection lost, 5xx while restarting)."""
    failures = 0
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(ssl=api.ssl_context())
    url = f"/apis/{GROUP}/{VERSION}/namespaces/crash/{VMS}"
    async with aiohttp.ClientSession(api.url, headers=api.headers(), connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=5)) as http:
        async def worker() -> None:
            nonlocal failures
            while not stop.is_set():
                name = f"{prefix}-{next(counter)}"
                try:
                    async with http.post(url, json=make_vm(name)) as resp:
                        body = await resp.json(content_type=None)
                        if resp.status == 201:
                            acked[name] = body["metadata"]["resourceVersion"]
                        else:
                            failures += 1
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    failures += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def stored_objects(api) -> dict[str, dict]:
    connector = aiohttp.TCPConnector(ssl=api.ssl_context())
    async with aiohttp.ClientSession(api.url, headers=api.headers(), connector=connector) as http:
        async with http.get(f"/apis/{GROUP}/{VERSION}/namespaces/crash/{VMS}") as resp:
            return {i["metadata"]["name"]: i for i in (await resp.json())["items"]}


async def crash_during_writes(api, spec: inst.ServiceSpec, prefix: str) -> tuple[dict[str, str], int]:
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    writer = asyncio.create_task(write_stream(api, prefix, acked, stop))
    await asyncio.sleep(1.0)
    before = len(acked)
    await asyncio.to_thread(api.kill, spec)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(api.start, spec)
    deadline = time.monotonic() + 20
    while len(acked) <= before + 20 and time.monotonic() < deadline:  # writes resume after the restart
        await asyncio.sleep(0.1)
    stop.set()
    failures = await writer
    assert before > 0, "writes were acknowledged before the kill"
    return acked, failures


async def test_kill_9_of_virt_api_then_nats_loses_no_acknowledged_write(private_api):
    acked_api, failures_api = await crash_during_writes(private_api, inst.VIRT_API, "a")
    acked_nats, failures_nats = await crash_during_writes(private_api, inst.NATS_SERVER, "n")
    assert failures_api > 0 or failures_nats > 0  # the kills really hit the write stream

    # and once more, both down hard, then back: the data on disk is what was acknowledged
    private_api.kill(inst.VIRT_API)
    private_api.kill(inst.NATS_SERVER)
    private_api.start(inst.NATS_SERVER)
    private_api.start(inst.VIRT_API)

    stored = await stored_objects(private_api)
    acked = {**acked_api, **acked_nats}
    missing = sorted(set(acked) - set(stored))
    assert missing == []
    changed = {n: (rv, stored[n]["metadata"]["resourceVersion"]) for n, rv in acked.items()
               if stored[n]["metadata"]["resourceVersion"] != rv}
    assert changed == {}
    for name, obj in stored.items():  # unacknowledged writes may have landed, but only whole
        assert obj["metadata"]["uid"] and obj["spec"]["runStrategy"] == "Halted", name
    assert len(acked) > 40
