"""virt-migration integration helpers: objects in a real store, the test playing scheduler-bridge
and both virt-handlers by writing the fields they would write (migration-design.md), and a
watch that records the phase timeline and the highest concurrency."""
from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any, Callable

from services.virt_migration.manager import MigrationManager
from shared.api.migration_vocabulary import MIGRATION_FINALIZER, RUNNING_MIGRATION_PHASES
from shared.api.vocabulary import format_time, utc_now
from shared.errors import Conflict, NotFound
from shared.store import ObjectStore

VMIS = "virtualmachineinstances"
VMIMS = "virtualmachineinstancemigrations"
NS = "default"


async def start_manager(store: ObjectStore, identity: str, **kwargs: Any) -> tuple[MigrationManager, asyncio.Task]:
    """A virt-migration replica in this process (short lease timings), running as a task."""
    manager = MigrationManager(store, identity, lease_duration=3.0, renew_deadline=2.0, retry_period=0.3, **kwargs)
    return manager, asyncio.get_running_loop().create_task(manager.run())


async def stop_manager(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def now_text() -> str:
    return format_time(utc_now())


async def create_vmi(store: ObjectStore, name: str, node: str, *, eviction: str | None = None,
                     migratable: bool = True) -> dict:
    spec: dict[str, Any] = {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}
    if eviction:
        spec["evictionStrategy"] = eviction
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS, "labels": {"kubevirt.io/nodeName": node}},
            "spec": spec,
            "status": {"phase": "Running", "nodeName": node, "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "LiveMigratable", "status": "True" if migratable else "False"}]}}
    return await store.create(VMIS, body)


async def create_vmim(store: ObjectStore, name: str, vmi: str, *, finalizer: bool = True,
                      annotations: dict | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"kubevirt.io/vmi-name": vmi}}
    if finalizer:
        meta["finalizers"] = [MIGRATION_FINALIZER]
    if annotations:
        meta["annotations"] = annotations
    return await store.create(VMIMS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                                      "metadata": meta, "spec": {"vmiName": vmi}})


async def change(store: ObjectStore, plural: str, name: str, edit: Callable[[dict], bool | None], *,
                 subresource: str | None = "status", namespace: str | None = NS) -> dict | None:
    """Read-modify-write with retry on Conflict; ``edit`` mutates the object in place and returns
    False to skip the write."""
    while True:
        try:
            obj = await store.get(plural, namespace, name)
        except NotFound:
            return None
        if edit(obj) is False:
            return obj
        try:
            if subresource:
                return await store.update(plural, obj, subresource=subresource)
            return await store.update(plural, obj, has_status_subresource=False)
        except Conflict:
            continue


async def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        try:
            last = await check()
        except NotFound:
            last = None
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: last={last!r}")
        await asyncio.sleep(0.03)


async def vmim_phase(store: ObjectStore, name: str) -> str | None:
    try:
        return ((await store.get(VMIMS, NS, name)).get("status") or {}).get("phase")
    except NotFound:
        return None


def state_of(vmi: dict) -> dict:
    return (vmi.get("status") or {}).get("migrationState") or {}


# -- the test as scheduler-bridge and virt-handlers ------------------------------------------------
async def bridge_places(store: ObjectStore, vmim: str, target: str, source: str) -> None:
    def edit(obj: dict) -> bool:
        status = obj.setdefault("status", {})
        if (status.get("migrationState") or {}).get("targetNode"):
            return False
        status["migrationState"] = {"targetNode": target, "sourceNode": source}
        return True
    await change(store, VMIMS, vmim, edit)


async def handler_writes(store: ObjectStore, vmi: str, uid: str, **fields: Any) -> dict | None:
    """A handler's CAS on the VMI's migration state of migration ``uid`` (nothing when another's)."""
    def edit(obj: dict) -> bool:
        state = state_of(obj)
        if state.get("migrationUid") != uid:
            return False
        state.update(fields)
        return True
    return await change(store, VMIS, vmi, edit)


async def target_takes_ownership(store: ObjectStore, vmi: str, uid: str) -> dict | None:
    """The target handler's ownership CAS after the source reported success."""
    def edit(obj: dict) -> bool:
        state = state_of(obj)
        if state.get("migrationUid") != uid or not state.get("completed") or state.get("failed"):
            return False
        obj["status"]["nodeName"] = state["targetNode"]
        obj["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = state["targetNode"]
        state.update(targetNodeDomainDetected=True, targetNodeDomainReadyTimestamp=now_text(),
                     endTimestamp=state.get("endTimestamp") or now_text())
        obj["status"]["migrationMethod"] = "BlockMigration"
        return True
    return await change(store, VMIS, vmi, edit, subresource=None)


class StandInAgents:
    """scheduler-bridge and both handlers, played in a loop: places Scheduling VMIMs on ``target``
    (or the other of two nodes), reports target ready, start, and success after ``transfer``
    seconds (or honours an abort)."""

    def __init__(self, store: ObjectStore, target: Callable[[str], str], transfer: float = 0.3) -> None:
        self.store = store
        self.target = target
        self.transfer = transfer
        self.started: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def step(self) -> None:
        vmims, _ = await self.store.list(VMIMS, NS)
        for m in vmims:
            status = m.get("status") or {}
            if status.get("phase") == "Scheduling" and not (status.get("migrationState") or {}).get("targetNode"):
                vmi = await self.store.get(VMIS, NS, m["spec"]["vmiName"])
                source = vmi["status"]["nodeName"]
                await bridge_places(self.store, m["metadata"]["name"], self.target(source), source)
        vmis, _ = await self.store.list(VMIS, NS)
        loop = asyncio.get_running_loop()
        for v in vmis:
            state, name = state_of(v), v["metadata"]["name"]
            uid = state.get("migrationUid")
            if not uid or state.get("failed") or (state.get("completed") and v["status"]["nodeName"] == state.get(
                    "targetNode")):
                continue
            if state.get("completed"):
                await target_takes_ownership(self.store, name, uid)
            elif not state.get("targetNodeAddress"):
                await handler_writes(self.store, name, uid, targetNodeAddress="127.0.0.1")
            elif not state.get("startTimestamp"):
                if not state.get("abortRequested"):
                    self.started[uid] = loop.time()
                    await handler_writes(self.store, name, uid, startTimestamp=now_text(), mode="PreCopy")
            elif state.get("abortRequested"):
                await handler_writes(self.store, name, uid, abortStatus="Succeeded", completed=True, failed=True,
                                     endTimestamp=now_text(), failureReason="aborted")
            elif loop.time() - self.started.get(uid, loop.time()) >= self.transfer:
                await handler_writes(self.store, name, uid, completed=True, endTimestamp=now_text(),
                                     progress={"downtimeMs": 12})
            else:
                self.started.setdefault(uid, loop.time())

    async def _run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(0.05)

    def __enter__(self) -> "StandInAgents":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ConcurrencyWatch:
    """Every VMIM phase change from a store watch: the timeline per VMIM and the highest number
    of migrations in running phases, in total and per source node (``source_of(vmi name)``)."""

    def __init__(self, store: ObjectStore, source_of: Callable[[str], str]) -> None:
        self.store = store
        self.source_of = source_of
        self.phase: dict[str, tuple[str, str]] = {}  # vmim -> (phase, source node)
        self.timeline: dict[str, list[str]] = {}
        self.last: dict[str, dict] = {}  # vmim -> its last stored state (kept after deletion)
        self.max_total = 0
        self.max_per_node: Counter[str] = Counter()
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        async for event in self.store.watch(VMIMS, NS, resource_version="0"):
            obj = event.object
            name = obj["metadata"]["name"]
            if event.type != "DELETED":
                self.last[name] = obj
            if event.type == "DELETED":
                self.phase.pop(name, None)
                continue
            phase = (obj.get("status") or {}).get("phase") or ""
            if self.phase.get(name, ("",))[0] != phase:
                self.timeline.setdefault(name, []).append(phase)
            self.phase[name] = (phase, self.source_of(obj["spec"]["vmiName"]))
            running = [src for p, src in self.phase.values() if p in RUNNING_MIGRATION_PHASES]
            self.max_total = max(self.max_total, len(running))
            for node, count in Counter(running).items():
                self.max_per_node[node] = max(self.max_per_node[node], count)

    def start(self) -> "ConcurrencyWatch":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
