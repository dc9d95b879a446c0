"""Killing the leader of each leader-elected service (kill -9), 2 replicas each as real processes
on a real nats-server: the standby leads within the lease duration and nothing in flight is done
twice; a killed leader restarted with its stable identity takes its own Lease back at once.

One stack for the whole file (handlers on libvirt's test driver, stand-in migrations): the four
services are killed one after the other, each while it has work in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from cluster_processes import (
    CONTENTS,
    LEASE_DURATION,
    NS,
    RETRY_PERIOD,
    SNAPSHOTS,
    VMIMS,
    VMIS,
    VMS,
    Cluster,
    History,
    lease_holder,
    lease_transitions,
    wait_until,
)
from shared.leader import LeaderElector
from shared.store import ObjectStore

pytestmark = pytest.mark.timeout(300)

#: from the kill to the standby leading: the lease, one retry period, and polling/process slack
TAKEOVER_BOUND = LEASE_DURATION + RETRY_PERIOD + 1.0


def make_vm(name: str, run_strategy: str = "Always", claim: str | None = None) -> dict:
    devices: dict = {"disks": [{"name": "data", "disk": {"bus": "virtio"}}]} if claim else {}
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}] if claim else []
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": run_strategy, "template": {"metadata": {"labels": {"vm": name}}, "spec": {
                "domain": {"devices": devices, "resources": {"requests": {"memory": "64Mi"}}},
                "terminationGracePeriodSeconds": 0, "volumes": volumes}}}}


async def printable(store, name):
    try:
        return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus")
    except Exception:  # noqa: BLE001 - not there yet
        return None


async def all_running(store, names):
    return all([await printable(store, n) == "Running" for n in names])


async def kill_leader_and_time_takeover(cluster: Cluster, store, service: str) -> tuple[str, str, float]:
    """kill -9 the replica holding ``service``'s Lease; (killed, new leader, seconds to takeover)."""
    leader = await wait_until(lambda: lease_holder(store, service), 30, f"{service} leader")
    killed = cluster.replicas[leader]
    killed.kill()
    started = time.monotonic()
    standby = await wait_until(lambda: _other_holder(store, service, leader), 3 * TAKEOVER_BOUND,
                               f"{service} standby takes the lease")
    took = time.monotonic() - started
    assert await asyncio.to_thread(cluster.replicas[standby].get, "/leader") == (200, {"identity": standby,
                                                                                        "leader": True})
    return leader, standby, took


async def _other_holder(store, service, old):
    holder = await lease_holder(store, service)
    return holder if holder and holder != old else None


def event_counts(events: list[dict]) -> Counter:
    """(involved object uid, reason) -> number of times recorded (Event objects x their count)."""
    counts: Counter = Counter()
    for event in events:
        counts[(event["involvedObject"].get("uid"), event["reason"])] += int(event.get("count") or 1)
    return counts


async def test_each_leader_killed_a_standby_continues_within_the_lease_and_nothing_is_done_twice(nats_server,
                                                                                                tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    store = await ObjectStore.connect([nats_server.url], bucket_prefix=prefix)
    cluster = Cluster(tmp_path, [nats_server.url], prefix)
    for node in ("node-a", "node-b"):
        cluster.add_handler(node, ["--stand-in-migration-seconds", "1"])
    for service in ("virt-controller", "scheduler-bridge", "virt-migration", "virt-snapshot"):
        cluster.add_leader_elected(service, 2)
    history = History(store, [VMIS, VMIMS, SNAPSHOTS, CONTENTS])
    takeovers: dict[str, float] = {}
    try:
        cluster.start_all()
        await cluster.wait_healthy()
        snapped = [f"vm-s{i}" for i in range(3)]  # stopped VMs with a claim each (the local provisioner's)
        for name in snapped:
            await store.create("persistentvolumeclaims", {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"disk-{name}", "namespace": NS},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}})
            await store.create(VMS, make_vm(name, "Halted", claim=f"disk-{name}"))

        # virt-controller: VMs created, the leader killed while it creates their VMIs
        first = [f"vm-c{i}" for i in range(6)]
        await asyncio.gather(*(store.create(VMS, make_vm(n)) for n in first))
        killed, _, takeovers["virt-controller"] = await kill_leader_and_time_takeover(cluster, store,
                                                                                     "virt-controller")
        await wait_until(lambda: all_running(store, first), 60, "first VMs Running")

        # scheduler-bridge: killed while the new VMIs wait for a node
        second = [f"vm-b{i}" for i in range(6)]
        await asyncio.gather(*(store.create(VMS, make_vm(n)) for n in second))
        await wait_until(lambda: _vmis_exist(store, second), 30, "second VMIs created")
        _, _, takeovers["scheduler-bridge"] = await kill_leader_and_time_takeover(cluster, store, "scheduler-bridge")
        await wait_until(lambda: all_running(store, second), 60, "second VMs Running")

        # virt-migration: killed while three migrations are handed off and transferred
        migrated = first[:3]
        for name in migrated:
            await store.create(VMIMS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                                       "metadata": {"name": f"mig-{name}", "namespace": NS},
                                       "spec": {"vmiName": name}})
        _, _, takeovers["virt-migration"] = await kill_leader_and_time_takeover(cluster, store, "virt-migration")
        await wait_until(lambda: _all_phase(store, VMIMS, [f"mig-{n}" for n in migrated], "Succeeded"), 90,
                         "migrations Succeeded")

        # virt-snapshot: killed while three snapshots of stopped VMs are copied (qemu-img)
        await wait_until(lambda: _all_phase(store, "persistentvolumeclaims", [f"disk-{n}" for n in snapped],
                                            "Bound"), 30, "claims Bound")
        for name in snapped:
            await store.create(SNAPSHOTS, {
                "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
                "metadata": {"name": f"snap-{name}", "namespace": NS},
                "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": name}}})
        _, _, takeovers["virt-snapshot"] = await kill_leader_and_time_takeover(cluster, store, "virt-snapshot")
        await wait_until(lambda: _all_phase(store, SNAPSHOTS, [f"snap-{n}" for n in snapped], "Succeeded"), 60,
                         "snapshots Succeeded")

        # the killed replicas come back under their own identities as standbys
        for replica in cluster.replicas.values():
            if not replica.is_running():
                replica.start()
        await cluster.wait_healthy()

        # a killed leader restarted at once takes its own Lease back: no transition, no wait
        leader = await lease_holder(store, "virt-controller")
        transitions = await lease_transitions(store, "virt-controller")
        cluster.replicas[leader].kill()
        cluster.replicas[leader].start()
        restarted = time.monotonic()
        await wait_until(lambda: _leads(cluster, leader), 60, "restarted leader leads")
        back_after = time.monotonic() - restarted
        assert await lease_holder(store, "virt-controller") == leader
        assert await lease_transitions(store, "virt-controller") == transitions, "the standby never took it"

        await asyncio.sleep(1.0)  # anything a second leader would do twice has had time to happen
        events, _ = await store.list("events", NS)
        vms = {n: await store.get(VMS, NS, n) for n in first + second}
    finally:
        await history.stop()
        cluster.stop_all()
        await store.close()
    print(f"takeover seconds after kill -9: {takeovers}; restarted leader leads after {back_after:.1f}s")
    for service, seconds in takeovers.items():
        assert seconds <= TAKEOVER_BOUND, f"{service}: standby led {seconds:.1f}s after the kill"

    # one VMI per VM ever (the controller created each once), each placed once
    uids = history.uids_by_name(VMIS)
    assert {n: len(uids[n]) for n in first + second} == {n: 1 for n in first + second}
    for version in history.versions[VMIS]:
        stamps = Counter(s["phase"] for s in (version["object"].get("status") or {}).get("phaseTransitionTimestamps")
                         or [])
        assert stamps["Scheduled"] <= 1 and stamps["Running"] <= 1, version["object"]["metadata"]["name"]
    nodes_of = {n: {v["object"]["status"].get("nodeName") for v in history.versions[VMIS]
                    if v["object"]["metadata"]["name"] == n and (v["object"].get("status") or {}).get("nodeName")}
                for n in first + second}
    for name in first + second:
        assert len(nodes_of[name]) == (2 if name in migrated else 1), (name, nodes_of[name])
    # one hand-off per migration
    hand_offs = {(v["object"]["metadata"]["name"], ((v["object"]["status"].get("migrationState") or {})
                                                   .get("migrationUid")))
                 for v in history.versions[VMIS] if (v["object"].get("status") or {}).get("migrationState")}
    assert sorted(name for name, _ in hand_offs) == sorted(migrated)
    # one content per snapshot, made once
    contents = history.uids_by_name(CONTENTS)
    assert len(contents) == len(snapped) and all(len(u) == 1 for u in contents.values()), contents
    # no Event recorded twice for the same object and reason
    counts = event_counts(events)
    twice = {key: n for key, n in counts.items() if n > 1}
    assert not twice, f"Events recorded more than once: {twice}"
    vm_uids = {vm["metadata"]["uid"] for vm in vms.values()}
    created = [key for key in counts if key[1] == "SuccessfulCreate" and key[0] in vm_uids]
    assert len(created) == len(vms), "each VM's VMI creation reported once"


async def _vmis_exist(store, names):
    items, _ = await store.list(VMIS, NS)
    return {n for n in names} <= {v["metadata"]["name"] for v in items}


async def _all_phase(store, plural, names, phase):
    for name in names:
        try:
            obj = await store.get(plural, NS, name)
        except Exception:  # noqa: BLE001 - not there yet
            return False
        if (obj.get("status") or {}).get("phase") != phase:
            return False
    return True


async def _leads(cluster, name):
    return (await asyncio.to_thread(cluster.replicas[name].get, "/leader"))[1] == {"identity": name, "leader": True}


async def test_a_restarted_leader_takes_its_own_lease_back_at_once(object_store):
    """A leader that dies without releasing (kill -9) and comes back under the same identity holds
    the Lease at its first attempt; another candidate still waits for the lease to lapse."""
    old = LeaderElector(object_store, "virt-controller-host1", lease_duration=15, renew_deadline=10,
                        retry_period=2)
    assert await old.try_acquire_or_renew()
    standby = LeaderElector(object_store, "virt-controller-host2", lease_duration=15, renew_deadline=10,
                            retry_period=2)
    assert not await standby.try_acquire_or_renew()
    restarted = LeaderElector(object_store, "virt-controller-host1", lease_duration=15, renew_deadline=10,
                              retry_period=2)  # a new process: nothing observed yet
    assert await restarted.try_acquire_or_renew()
    lease = await object_store.get("leases", "kubevirt", "virt-controller")
    assert lease["spec"]["holderIdentity"] == "virt-controller-host1"
    assert lease["spec"]["leaseTransitions"] == 0
    assert not await standby.try_acquire_or_renew()
