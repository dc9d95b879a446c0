"""Helpers for the restore and provisioner integration tests: virt-snapshot's provisioner and
restore controllers on a real store (nats-server from tests/conftest.py) with real qemu-img files
in a temporary state directory. The tests play virt-api (creating objects), the snapshot
controllers (a Succeeded snapshot, its ready content and the copy file) and virt-controller/the
handler (VMI phases)."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from polling import wait_until
from services.virt_snapshot import local_volumes
from services.virt_snapshot.provisioner_controller import ProvisionerController
from services.virt_snapshot.restore_controller import RestoreController
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.tasks import cancel_and_wait
from shared.workers import start_workers

NS = "default"
VMS, VMIS, PVCS = "virtualmachines", "virtualmachineinstances", "persistentvolumeclaims"
SNAPSHOTS, CONTENTS, RESTORES = "virtualmachinesnapshots", "virtualmachinesnapshotcontents", "virtualmachinerestores"
MARKER = b"snapshot-time data\n"


class OffsetClock:
    """The wall clock moved by ``offset`` (tests jump past the restore grace period)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


@dataclass
class Running:
    """The controllers under test and their tasks."""

    store: Any
    pvc_root: Path
    copies_dir: Path
    clock: OffsetClock
    provisioner: ProvisionerController
    restores: RestoreController
    informers: list[Informer[Any]]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def start(store: Any, state: Path) -> Running:
    """Informers, the provisioner and the restore controller with two workers each."""
    clock = OffsetClock()
    inf = {
        "vms": Informer(store, VMS, decode=VirtualMachine),
        "vmis": Informer(store, VMIS, decode=VirtualMachineInstance),
        "snapshots": Informer(store, SNAPSHOTS, decode=VirtualMachineSnapshot),
        "contents": Informer(store, CONTENTS, decode=VirtualMachineSnapshotContent),
        "restores": Informer(store, RESTORES, decode=VirtualMachineRestore),
        "pvcs": Informer(store, PVCS, decode=PersistentVolumeClaim),
    }
    recorder = EventRecorder(store, "virt-snapshot")
    provisioner = ProvisionerController(store, inf["pvcs"], inf["vmis"], recorder, pvc_root=state / "pvcs",
                                        copies_dir=state / "volume-snapshots")
    restores = RestoreController(store, recorder=recorder, clock=clock, **inf)
    running = Running(store, state / "pvcs", state / "volume-snapshots", clock, provisioner, restores,
                      list(inf.values()))
    for informer in running.informers:
        informer.start()
    await asyncio.gather(*(i.wait_synced(10) for i in running.informers))
    provisioner.enqueue_all()
    restores.enqueue_all()
    running.tasks = (start_workers(provisioner.queue, provisioner.reconcile, 2, name="provisioner")
                     + start_workers(restores.queue, restores.reconcile, 2, name="restore"))
    return running


async def stop(running: Running) -> None:
    """Stop the workers and informers."""
    await cancel_and_wait(running.tasks)
    for informer in running.informers:
        await informer.stop()


# -- objects ----------------------------------------------------------------------------------


def claim_body(name: str, size: str = "64Mi", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def vm_spec(claim: str, run_strategy: str = "Halted") -> dict[str, Any]:
    return {"runStrategy": run_strategy, "template": {"spec": {
        "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                         {"name": "data", "disk": {"bus": "virtio"}}],
                               "interfaces": [{"name": "default", "masquerade": {},
                                               "macAddress": "02:00:00:00:00:01"}]}},
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}


async def create_vm(store: Any, name: str, claim: str, run_strategy: str = "Halted") -> dict[str, Any]:
    return await store.create(VMS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                    "metadata": {"name": name, "namespace": NS}, "spec": vm_spec(claim, run_strategy)})


async def create_vmi(store: Any, name: str, phase: str = "Running") -> dict[str, Any]:
    vmi = await store.create(VMIS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                    "metadata": {"name": name, "namespace": NS},
                                    "spec": vm_spec("x")["template"]["spec"]})
    vmi["status"] = {"phase": phase}
    return await store.update(VMIS, vmi, subresource="status")


async def bound_claim(store: Any, name: str, size: str = "64Mi") -> dict[str, Any]:
    """Create a claim and wait until the provisioner binds it."""
    await store.create(PVCS, claim_body(name, size))
    return await wait_until(lambda: claim_phase(store, name, "Bound"), timeout=20)


async def claim_phase(store: Any, name: str, phase: str) -> dict[str, Any] | None:
    try:
        pvc = await store.get(PVCS, NS, name)
    except Exception:
        return None
    return pvc if (pvc.get("status") or {}).get("phase") == phase else None


def write_copy(copies_dir: Path, name: str, payload: bytes = MARKER, size: int = 64 * 2**20) -> Path:
    """A complete volume copy (qcow2) whose first bytes are ``payload``."""
    raw = copies_dir / NS / f"{name}.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with open(raw, "wb") as f:
        f.write(payload)
        f.truncate(size)
    target = local_volumes.copy_path(copies_dir, NS, name)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(target)], check=True)
    raw.unlink()
    return target


def read_head(image: Path, tmp: Path, length: int = len(MARKER)) -> bytes:
    """The first ``length`` guest bytes of a qcow2 image."""
    out = tmp / f"{image.parent.name}-{image.name}.raw"
    subprocess.run(["qemu-img", "convert", "-q", "-U", "-O", "raw", str(image), str(out)], check=True)
    with open(out, "rb") as f:
        data = f.read(length)
    out.unlink()
    return data


async def make_snapshot(store: Any, copies_dir: Path, vm: dict[str, Any], claim: dict[str, Any],
                        name: str = "snap1") -> tuple[dict[str, Any], str]:
    """A Succeeded, ready snapshot of ``vm`` with its content and one copy of volume ``data``
    (what the snapshot controllers leave behind). Returns the snapshot and the copy's name."""
    snap = await store.create(SNAPSHOTS, {
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm["metadata"]["name"]}}})
    uid = snap["metadata"]["uid"]
    copy_name = f"vmsnapshot-{uid}-volume-data"
    write_copy(copies_dir, copy_name)
    content_name = f"vmsnapshot-content-{uid}"
    await store.create(CONTENTS, {
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshotContent",
        "metadata": {"name": content_name, "namespace": NS},
        "spec": {"virtualMachineSnapshotName": name,
                 "source": {"virtualMachine": {"metadata": {k: vm["metadata"][k] for k in ("name", "namespace", "uid")},
                                               "spec": vm["spec"]}},
                 "volumeBackups": [{"volumeName": "data", "volumeSnapshotName": copy_name,
                                    "persistentVolumeClaim": {"metadata": {"name": claim["metadata"]["name"],
                                                                           "namespace": NS},
                                                              "spec": claim["spec"]}}]}})
    content = await store.get(CONTENTS, NS, content_name)
    content["status"] = {"readyToUse": True, "creationTime": "2026-12-07T10:00:00Z"}
    await store.update(CONTENTS, content, subresource="status")
    snap["status"] = {"phase": "Succeeded", "readyToUse": True, "sourceUID": vm["metadata"]["uid"],
                      "virtualMachineSnapshotContentName": content_name, "creationTime": "2026-12-07T10:00:00Z"}
    snap = await store.update(SNAPSHOTS, snap, subresource="status")
    return snap, copy_name


async def create_restore(store: Any, name: str, target: str, **spec: Any) -> dict[str, Any]:
    return await store.create(RESTORES, {
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
                 "virtualMachineSnapshotName": "snap1", **spec}})


async def restore_state(store: Any, name: str) -> dict[str, Any]:
    return (await store.get(RESTORES, NS, name)).get("status") or {}


def condition(status: dict[str, Any], ctype: str) -> tuple[str, str] | None:
    for cond in status.get("conditions") or []:
        if cond["type"] == ctype:
            return cond["status"], cond.get("reason", "")
    return None


async def events_of(store: Any, name: str) -> list[tuple[str, str, str]]:
    events, _ = await store.list("events", NS)
    return [(e["type"], e["reason"], e["message"]) for e in events if e["involvedObject"]["name"] == name]


async def complete(store: Any, name: str, timeout: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await restore_state(store, name)
        return status if status.get("complete") else None
    return await wait_until(check, timeout=timeout)
