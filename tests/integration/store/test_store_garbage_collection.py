"""Who cascades and who collects, under an installation's real NATS users (a secured
nats-server): removing a deleted VM's last finalizer as virt-controller removes the VM at once and
leaves the dependents virt-controller may not write (a VirtualMachineRestore, a PVC) to virt-api's
store maintenance, without a single refused publish; the maintenance finishes half-done cascades,
compacts with virt-api's rights, and runs on one virt-api replica at a time (Lease
kubevirt/virt-api-store-maintenance)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from secured_nats import Secured, make_secured, store_as
from store_objects import make_vm, make_vmi_owned_by

from services.virt_api.store_maintenance import LEASE_NAME, MaintenanceSettings, StoreMaintenance
from shared.errors import NotFound
from shared.natsserver import NatsServer
from shared.store import ObjectStore
from shared.store.keys import compute_bucket, compute_key
from shared.tasks import cancel_and_wait

VMS, VMIS = "virtualmachines", "virtualmachineinstances"
RESTORES, PVCS = "virtualmachinerestores", "persistentvolumeclaims"
FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Secured:
    return make_secured(tmp_path_factory.mktemp("gc-secured"))


@pytest.fixture(scope="module")
def server(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    nats = NatsServer(tmp_path_factory.mktemp("gc-server"), authorization=secured.authorization, tls=secured.tls)
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


class Refusals:
    """Every publish or subscription nats-server refused on the watched connections."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def watch(self, store: ObjectStore, role: str) -> ObjectStore:
        store.bus.add_permission_listener(lambda op, subject: self.seen.append((role, op, subject)))
        return store


@pytest.fixture
def refusals() -> Refusals:
    return Refusals()


@pytest.fixture
async def api(server: NatsServer, secured: Secured, refusals: Refusals) -> AsyncIterator[ObjectStore]:
    store = refusals.watch(await store_as(server, secured, "virt-api"), "virt-api")
    yield store
    await store.close()


@pytest.fixture
async def controller(server: NatsServer, secured: Secured, refusals: Refusals) -> AsyncIterator[ObjectStore]:
    store = refusals.watch(await store_as(server, secured, "virt-controller"), "virt-controller")
    yield store
    await store.close()


def owned_by(owner: dict[str, Any], api_version: str, kind: str, name: str, **body: Any) -> dict[str, Any]:
    meta = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": meta["namespace"], "ownerReferences": [{
                "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
            **body}


async def make_vm_with_dependents(api: ObjectStore, name: str) -> dict[str, Any]:
    """A VM (with virt-controller's finalizer) owning a VMI, a VirtualMachineRestore and a PVC
    the restore made, all created through virt-api's user."""
    vm = await api.create(VMS, make_vm(name, finalizers=[FINALIZER]))
    await api.create(VMIS, make_vmi_owned_by(vm))
    await api.create(RESTORES, owned_by(vm, "snapshot.kubevirt.io/v1beta1", "VirtualMachineRestore", f"{name}-restore",
                                        spec={"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine",
                                                         "name": name},
                                              "virtualMachineSnapshotName": f"{name}-snap"}))
    await api.create(PVCS, owned_by(vm, "v1", "PersistentVolumeClaim", f"restore-{name}-disk",
                                    spec={"accessModes": ["ReadWriteOnce"],
                                          "resources": {"requests": {"storage": "1Gi"}}}))
    return vm


async def exists(store: ObjectStore, plural: str, name: str) -> bool:
    try:
        await store.get(plural, "default", name)
    except NotFound:
        return False
    return True


async def test_finalizer_removal_by_virt_controller_leaves_foreign_dependents_to_virt_api(
        api: ObjectStore, controller: ObjectStore, refusals: Refusals, caplog: pytest.LogCaptureFixture):
    await make_vm_with_dependents(api, "vm-a")
    await api.delete(VMS, "default", "vm-a")  # graceful: only deletionTimestamp
    deleting = await controller.get(VMS, "default", "vm-a")
    assert deleting["metadata"]["deletionTimestamp"]

    caplog.set_level("INFO", logger="kubevirt.store.ownership")
    released = {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}}
    removed = await controller.update(VMS, released)  # never fails for the dependents

    assert removed["metadata"]["name"] == "vm-a"
    assert not await exists(api, VMS, "vm-a")
    assert not await exists(api, VMIS, "vm-a")  # virt-controller writes VMIs: cascaded at once
    assert await exists(api, RESTORES, "vm-a-restore")  # virt-snapshot's and virt-api's bucket
    assert await exists(api, PVCS, "restore-vm-a-disk")
    assert refusals.seen == []  # nothing was even tried: no permissions violation anywhere
    left = sorted(r.getMessage().split(" of removed owner")[0] for r in caplog.records
                  if "left to the garbage collector" in r.getMessage())
    assert left == ["dependent persistentvolumeclaims default/restore-vm-a-disk",
                    "dependent virtualmachinerestores default/vm-a-restore"]

    purged, collected = await api.maintain(compact=False)
    assert (purged, collected) == (0, 1)
    assert not await exists(api, RESTORES, "vm-a-restore")
    assert not await exists(api, PVCS, "restore-vm-a-disk")
    assert await api.maintain(compact=False) == (0, 0)  # the hints went with them
    assert refusals.seen == []


async def test_maintenance_finishes_a_half_done_cascade_and_compacts_with_virt_api_rights(
        api: ObjectStore, refusals: Refusals):
    vm = await make_vm_with_dependents(api, "vm-b")
    alive = await api.create(VMS, make_vm("vm-alive"))
    kept = await api.create(PVCS, owned_by(alive, "v1", "PersistentVolumeClaim", "alive-disk", spec={}))
    # what a process killed between removing the owner and deleting its dependents leaves behind
    await api.kv.write(compute_bucket(api.prefix, VMS), compute_key("default", "vm-b"), b"{}",
                       expected=int(vm["metadata"]["resourceVersion"]), delete=True)

    maintenance = StoreMaintenance(api, "virt-api-test", MaintenanceSettings(interval=0.1, keep_deleted=0),
                                   lease_duration=3.0, renew_deadline=2.0, retry_period=0.2)
    running = asyncio.create_task(maintenance.run())
    try:
        async with asyncio.timeout(10):
            while await exists(api, RESTORES, "vm-b-restore") or await exists(api, PVCS, "restore-vm-b-disk") \
                    or await api.compaction_watermark(VMS) == 0:
                await asyncio.sleep(0.05)
    finally:
        await cancel_and_wait([running])
    assert not await exists(api, VMIS, "vm-b")
    assert await api.get(PVCS, "default", "alive-disk") == kept
    # the first pass compacted: the delete markers are purged and the watermark raised
    assert await api.compaction_watermark(VMS) >= int(vm["metadata"]["resourceVersion"])
    assert await api.compact(VMS, older_than=0) == 0
    lease = await api.get("leases", "kubevirt", LEASE_NAME)
    assert lease["spec"]["holderIdentity"] == ""  # released on the way out
    assert refusals.seen == []


async def test_one_virt_api_replica_maintains_at_a_time(
        server: NatsServer, secured: Secured, api: ObjectStore, refusals: Refusals):
    other = refusals.watch(await store_as(server, secured, "virt-api"), "virt-api-2")
    passes: list[tuple[str, str, float]] = []  # (replica, "start"/"end", loop time)
    loop = asyncio.get_running_loop()

    def recording(store: ObjectStore, replica: str) -> None:
        maintain = store.maintain

        async def recorded(**kwargs: Any) -> tuple[int, int]:
            passes.append((replica, "start", loop.time()))
            try:
                return await maintain(**kwargs)
            finally:
                passes.append((replica, "end", loop.time()))
        store.maintain = recorded  # type: ignore[method-assign]

    recording(api, "a")
    recording(other, "b")
    settings = MaintenanceSettings(interval=0.05, compaction_interval=3600.0)
    replicas = {name: StoreMaintenance(store, f"virt-api-{name}", settings, lease_duration=3.0,
                                       renew_deadline=2.0, retry_period=0.2)
                for name, store in (("a", api), ("b", other))}
    tasks = {name: asyncio.create_task(r.run()) for name, r in replicas.items()}

    def count(replica: str) -> int:
        return sum(1 for r, edge, _ in passes if r == replica and edge == "end")

    try:
        async with asyncio.timeout(10):
            while count("a") + count("b") < 10:
                await asyncio.sleep(0.05)
        first = "a" if count("a") else "b"
        second = "b" if first == "a" else "a"
        assert replicas[first].is_leader and not replicas[second].is_leader
        assert count(second) == 0

        # the maintaining replica stops (releases the lease): the other takes over at once
        await cancel_and_wait([tasks[first]])
        async with asyncio.timeout(5):
            while count(second) < 3:
                await asyncio.sleep(0.05)
        assert replicas[second].is_leader
    finally:
        await cancel_and_wait(tasks.values())
        await other.close()

    # never two passes at once: the replicas' passes do not overlap in time
    spans: list[tuple[float, float]] = []
    open_at: dict[str, float] = {}
    for replica, edge, at in passes:
        if edge == "start":
            open_at[replica] = at
        else:
            spans.append((open_at.pop(replica), at))
    spans.sort()
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))
    assert refusals.seen == []


async def test_a_store_unaware_of_its_limits_is_refused_and_still_leaves_the_dependent(
        server: NatsServer, secured: Secured, api: ObjectStore, refusals: Refusals):
    # a store connected without writable_plurals tries, NATS refuses (Forbidden): the owner's
    # removal stands all the same and the collector finishes
    unaware = refusals.watch(await ObjectStore.connect([server.url], name="virt-controller",
                                                       credentials=secured.credentials["virt-controller"],
                                                       tls_ca=secured.tls.ca, op_timeout=3.0), "unaware")
    try:
        await make_vm_with_dependents(api, "vm-c")
        deleting = await api.delete(VMS, "default", "vm-c")
        await unaware.update(VMS, {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}})
    finally:
        await unaware.close()
    assert not await exists(api, VMS, "vm-c")
    assert await exists(api, RESTORES, "vm-c-restore")
    assert ("unaware", "publish", "$kv.kv_virtualmachinerestores.default.vm-c-restore") in refusals.seen
    assert await api.maintain(compact=False) == (0, 1)
    assert not await exists(api, RESTORES, "vm-c-restore") and not await exists(api, PVCS, "restore-vm-c-disk")
