"""Helpers for the migration tests of two in-process virt-handlers (imported by name): a node whose
agent can be stopped and started again on the same test-driver host (its domains survive, as
after a handler crash), and the hand-off writes the TEST makes in virt-migration's place."""

from __future__ import annotations

import asyncio

from handler_helpers import GI, VMIS, get_vmi
from polling import wait_until

from services.virt_handler.agent import AgentConfig, VmiAgent
from services.virt_handler.hypervisor import Hypervisor
from services.virt_handler.node import apply_node_status
from services.virt_handler.simulated_node import apply_test_node_file
from shared.api.migration_vocabulary import (
    MIGRATION_TARGET_NODE_LABEL,
    NODE_MIGRATION_URI_ANNOTATION,
    NODE_VMI_STATE_DIR_ANNOTATION,
)
from shared.errors import Conflict
from shared.events_recorder import EVENTS_PLURAL

MIGRATION_REASONS = ("PreparingTarget", "Migrating", "Migrated")


class MigrationNode:
    """One node: a private test-driver host (kept across agent restarts) and its agent."""

    def __init__(self, store, name, directory, *, stand_in_seconds=0.5):
        self.store = store
        self.name = name
        self.state_dir = directory / name
        self.uri = apply_test_node_file(directory / f"{name}.xml", cpus=8, memory_bytes=16 * GI)
        self.stand_in_seconds = stand_in_seconds
        self.hv = None
        self.agent = None

    async def open(self):
        self.hv = Hypervisor(self.uri)
        await self.hv.open()
        info = await self.hv.node_info()
        await apply_node_status(self.store, self.name, info, annotations={
            NODE_MIGRATION_URI_ANNOTATION: self.uri, NODE_VMI_STATE_DIR_ANNOTATION: str(self.state_dir / "vmis")})
        return self

    async def start(self):
        self.agent = VmiAgent(self.store, self.hv, AgentConfig(
            node_name=self.name, state_dir=self.state_dir, domain_type="test", resync_interval=1.0,
            shutdown_poll_interval=0.1, base_retry_delay=0.1, max_retry_delay=0.5,
            stand_in_migration_seconds=self.stand_in_seconds), bus=self.store.bus)
        await self.agent.start()
        return self

    async def stop(self):
        """Stop the agent only (a crash as far as the VMI is concerned: domains stay)."""
        if self.agent is not None:
            await self.agent.stop()
            self.agent = None

    async def close(self):
        await self.stop()
        if self.hv is not None:
            await self.hv.close()

    async def running_domains(self):
        return [d.name for d in await self.hv.list_domains() if d.is_active and d.state != "Paused"]

    async def domains(self):
        return [d for d in await self.hv.list_domains()]

    def vmi_dir(self, uid):
        return self.state_dir / "vmis" / uid


async def update_migration_state(store, name, change, namespace="default", *, label=None):
    """CAS on the VMI: ``change(migrationState dict) -> dict`` (virt-migration's writes, played by
    the test); ``label``: also set the migrationTargetNodeName label (whole-object update)."""
    for _ in range(20):
        vmi = await get_vmi(store, name, namespace)
        status = dict(vmi.get("status") or {})
        status["migrationState"] = change(dict(status.get("migrationState") or {}))
        new = {**vmi, "status": status}
        try:
            if label is not None:
                meta = dict(vmi["metadata"])
                meta["labels"] = {**(meta.get("labels") or {}), MIGRATION_TARGET_NODE_LABEL: label}
                new["metadata"] = meta
                return await store.update(VMIS, new, has_status_subresource=False)
            return await store.update(VMIS, new, subresource="status")
        except Conflict:
            await asyncio.sleep(0.01)
    raise AssertionError("could not write the migration state")


async def hand_off(store, name, source, target, migration_uid="mig-1", configuration=None, namespace="default"):
    """What virt-migration writes at hand-off (VMIM Scheduled)."""
    return await update_migration_state(store, name, namespace=namespace, label=target, change=lambda _old: {
        "migrationUid": migration_uid, "sourceNode": source, "targetNode": target,
        "migrationConfiguration": configuration or {"completionTimeoutPerGiB": 150, "progressTimeout": 150}})


def state_of(vmi):
    return ((vmi or {}).get("status") or {}).get("migrationState") or {}


async def wait_state(store, name, predicate, timeout=15.0):
    async def check():
        vmi = await get_vmi(store, name)
        return vmi if vmi is not None and predicate(vmi) else None
    return await wait_until(check, timeout)


async def migration_events(store, name="vm1", namespace="default"):
    """The migration Events about VMI ``name``, oldest first (the store lists Events by name, which
    carries the time): ``(source.host, type, reason, message, count)``."""
    items, _ = await store.list(EVENTS_PLURAL, namespace)
    return [(e["source"].get("host"), e["type"], e["reason"], e["message"], e["count"]) for e in items
            if e["involvedObject"]["kind"] == "VirtualMachineInstance" and e["involvedObject"]["name"] == name
            and e["reason"] in MIGRATION_REASONS]


async def wait_migration_events(store, expected, name="vm1", timeout=10.0):
    """Wait until the migration Events about ``name`` are exactly ``expected`` (they are recorded in
    the background); the failure shows the last list seen."""
    seen = []

    async def check():
        seen[:] = await migration_events(store, name)
        return seen == expected
    try:
        await wait_until(check, timeout)
    except AssertionError:
        raise AssertionError(f"migration Events {seen} are not {expected}") from None
