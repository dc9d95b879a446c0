"""Helpers for controller integration tests: objects, waiting, and stand-ins for the parts
this suite does not run (scheduler-bridge and virt-handler), which only write VMI status the
way the real ones do (nodeName + Scheduled; Running + Ready; Succeeded/Failed on deletion)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from shared.errors import Conflict, NotFound
from shared.store import ObjectStore

from shared.api.vocabulary import format_time
from services.virt_controller.manager import ControllerManager

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
NS = "default"


def now_text() -> str:
    return format_time(datetime.now(timezone.utc))


def with_phase(status: dict[str, Any], phase: str, timestamp: str) -> dict[str, Any]:
    """A copy of a JSON-ready VMI ``status`` in ``phase``, the transition recorded (as the real
    status writers, which work on the store's dicts, record it)."""
    if status.get("phase") == phase:
        return dict(status)
    stamps = list(status.get("phaseTransitionTimestamps") or [])
    stamps.append({"phase": phase, "phaseTransitionTimestamp": timestamp})
    return {**status, "phase": phase, "phaseTransitionTimestamps": stamps}


def make_vm(name: str, *, run_strategy: str | None = "Always", running: bool | None = None,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"app": name, **(labels or {})}},
            "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}},
                     "terminationGracePeriodSeconds": 0},
        }
    }
    if run_strategy is not None:
        spec["runStrategy"] = run_strategy
    if running is not None:
        spec["running"] = running
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def make_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": now_text()}]}}


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` every 20 ms until it returns a truthy value; fail after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except NotFound:
            last = None
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}: last={last!r}")
        await asyncio.sleep(0.02)


async def update_vmi_status(store: ObjectStore, name: str, change: Callable[[dict], dict | None]) -> dict | None:
    """Read-modify-write of a VMI's status with retry on Conflict (as the real writers do)."""
    while True:
        try:
            vmi = await store.get(VMIS, NS, name)
        except NotFound:
            return None
        status = change(dict(vmi.get("status") or {}))
        if status is None:
            return vmi
        try:
            return await store.update(VMIS, {**vmi, "status": status}, subresource="status")
        except Conflict:
            continue
        except NotFound:
            return None


def scheduled(node: str) -> Callable[[dict], dict]:
    def change(status: dict) -> dict:
        status = with_phase(status, "Scheduled", now_text())
        status["nodeName"] = node
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        return status
    return change


def running(status: dict) -> dict:
    status = with_phase(status, "Running", now_text())
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"] + [
        {"type": "Ready", "status": "True", "lastTransitionTime": now_text()}]
    return status


def final(phase: str) -> Callable[[dict], dict]:
    def change(status: dict) -> dict:
        status = with_phase(status, phase, now_text())
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"] + [
            {"type": "Ready", "status": "False", "reason": "GuestNotRunning", "lastTransitionTime": now_text()}]
        return status
    return change


class SimulatedNodeAgents:
    """Stand-in for scheduler-bridge + virt-handler (this suite tests the controller only).

    Watches VMIs: Scheduling -> Scheduled on ``node``; Scheduled -> Running (Ready); a VMI
    being deleted that is not final -> Succeeded (clean shutdown). ``auto_run=False`` stops at
    Scheduled so tests can drive the guest outcome themselves.
    """

    def __init__(self, store: ObjectStore, node: str = "node-a", *, auto_schedule: bool = True,
                 auto_run: bool = True) -> None:
        self.store = store
        self.node = node
        self.auto_schedule = auto_schedule
        self.auto_run = auto_run
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.store.create("nodes", make_node(self.node), namespaced=False)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        async for event in self.store.watch(VMIS, NS):
            if event.type == "DELETED":
                continue
            vmi = event.object
            name = vmi["metadata"]["name"]
            phase = (vmi.get("status") or {}).get("phase")
            deleting = bool(vmi["metadata"].get("deletionTimestamp"))
            if deleting and phase in ("Scheduled", "Running"):
                await update_vmi_status(self.store, name, lambda s: final("Succeeded")(s)
                                        if s.get("phase") in ("Scheduled", "Running") else None)
            elif phase == "Scheduling" and self.auto_schedule and not deleting:
                await update_vmi_status(self.store, name, lambda s: scheduled(self.node)(s)
                                        if s.get("phase") == "Scheduling" else None)
            elif phase == "Scheduled" and self.auto_run and not deleting:
                await update_vmi_status(self.store, name, lambda s: running(s)
                                        if s.get("phase") == "Scheduled" else None)


class PrintableStatusRecorder:
    """Records every distinct printableStatus a VM goes through (from the store's watch)."""

    def __init__(self, store: ObjectStore, name: str) -> None:
        self.store = store
        self.name = name
        self.seen: list[str] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.store.watch(VMS, NS, field_selector=f"metadata.name={self.name}"):
            value = (event.object.get("status") or {}).get("printableStatus")
            if value and (not self.seen or self.seen[-1] != value):
                self.seen.append(value)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def fast_manager(store: ObjectStore, identity: str = "ctl-test", **kwargs: Any) -> ControllerManager:
    """A manager with second-scale leader election for tests."""
    kwargs.setdefault("lease_duration", 3.0)
    kwargs.setdefault("renew_deadline", 2.0)
    kwargs.setdefault("retry_period", 0.5)
    return ControllerManager(store, identity, **kwargs)


@contextlib.asynccontextmanager
async def running_manager(store: ObjectStore, **kwargs: Any):
    manager = fast_manager(store, **kwargs)
    task = asyncio.create_task(manager.run())
    try:
        await wait_for(lambda: _true(manager.is_leader), 10, "leadership")
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _true(value: bool) -> bool:
    return value
