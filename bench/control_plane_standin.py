"""The stand-in node agent of ``control_plane_bench --agents standin``: one process writing what
scheduler-bridge and virt-handler write (nodeName + Scheduled, then Running + Ready; Succeeded on
deletion), so that the controller's share is measured alone. Run as
``python -m bench.control_plane_standin NATS_URL`` from this checkout.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone

from bench.control_plane_services import NODE
from shared.errors import Conflict, NotFound
from shared.store import ObjectStore

VMIS = "virtualmachineinstances"
NS = "bench"
PREFIX = "kvb_"


def micro_now() -> str:
    """Now as RFC 3339 UTC with microseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def agent_main(nats_url: str) -> None:
    """Register the Node, then move every bench VMI Scheduling -> Scheduled -> Running (and a
    deleted one to Succeeded) with CAS status writes, until killed."""
    store = await ObjectStore.connect([nats_url], bucket_prefix=PREFIX, name="bench-agent")
    now = micro_now()[:19] + "Z"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now}]}}
    try:
        await store.create("nodes", node, namespaced=False)
    except Exception:
        pass
    limit = asyncio.Semaphore(64)
    busy: set[str] = set()

    async def step(name: str) -> None:
        async with limit:
            while True:
                try:
                    vmi = await store.get(VMIS, NS, name)
                except NotFound:
                    return
                status = dict(vmi.get("status") or {})
                phase = status.get("phase")
                deleting = bool(vmi["metadata"].get("deletionTimestamp"))
                stamps = list(status.get("phaseTransitionTimestamps") or [])
                if deleting and phase in ("Scheduled", "Running"):
                    status["phase"] = "Succeeded"
                    status["conditions"] = [{"type": "Ready", "status": "False", "reason": "GuestNotRunning"}]
                elif not deleting and phase == "Scheduling":
                    status["phase"] = "Scheduled"
                    status["nodeName"] = NODE
                elif not deleting and phase == "Scheduled":
                    status["phase"] = "Running"
                    status["conditions"] = [{"type": "Ready", "status": "True"}]
                else:
                    return
                stamps.append({"phase": status["phase"], "phaseTransitionTimestamp": micro_now()})
                status["phaseTransitionTimestamps"] = stamps
                try:
                    await store.update(VMIS, {**vmi, "status": status}, subresource="status")
                except Conflict:
                    continue
                except NotFound:
                    return
                if status["phase"] != "Scheduled":
                    return  # Scheduled -> Running continues in this loop

    dirty: set[str] = set()

    async def run(name: str) -> None:
        try:
            while True:  # an event that arrived while we worked means: look again
                dirty.discard(name)
                await step(name)
                if name not in dirty:
                    return
        finally:
            busy.discard(name)

    async for event in store.watch(VMIS, NS):
        if event.type == "DELETED":
            continue
        name = event.object["metadata"]["name"]
        if name in busy:
            dirty.add(name)
        else:
            busy.add(name)
            asyncio.create_task(run(name))


if __name__ == "__main__":
    asyncio.run(agent_main(sys.argv[1]))
