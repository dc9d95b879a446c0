"""virt-snapshot integration helpers: the manager in this process on a real store, claims backed
by qcow2 files made with qemu-img in a temporary state directory, Bound PVC objects written
directly, and a stand-in virt-handler: a bus responder implementing the Freeze / Unfreeze /
BackupVolumes / BackupStatus / AbortBackup contract of shared.events (it copies with qemu-img
and records the commands it got), named as a stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path
from typing import Any

from services.virt_snapshot.manager import SnapshotManager
from shared import events
from shared.api.vocabulary import format_time, utc_now
from shared.errors import Conflict, NotFound
from shared.store import ObjectStore

NS = "default"
VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
SNAPSHOTS = "virtualmachinesnapshots"
CONTENTS = "virtualmachinesnapshotcontents"
PVCS = "persistentvolumeclaims"


async def start_manager(store: ObjectStore, identity: str, storage_dir: Path,
                        **kwargs: Any) -> tuple[SnapshotManager, asyncio.Task]:
    """A virt-snapshot replica in this process (short lease timings), running as a task."""
    manager = SnapshotManager(store, identity, storage_dir=storage_dir, lease_duration=3.0, renew_deadline=2.0,
                              retry_period=0.3, **kwargs)
    return manager, asyncio.get_running_loop().create_task(manager.run())


async def stop_manager(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_claim_file(storage_dir: Path, claim: str, size: str = "8M", pattern: bytes = b"") -> Path:
    """``<storage>/pvcs/default/<claim>/disk.img``: a qcow2 of ``size`` (with ``pattern`` written
    at offset 0 through qemu-io when given)."""
    path = storage_dir / "pvcs" / NS / claim / "disk.img"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    if pattern:
        raw = path.with_suffix(".raw")
        raw.write_bytes(pattern)
        subprocess.run(["qemu-img", "dd", "-f", "raw", "-O", "qcow2", f"if={raw}", f"of={path}"],
                       check=False, capture_output=True)
        raw.unlink()
    return path


async def create_bound_pvc(store: ObjectStore, name: str, size: str = "8Mi") -> dict:
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     "storageClassName": "local", "volumeMode": "Filesystem"}}
    current = await store.create(PVCS, body)
    while True:  # the provisioner may add its finalizer between the create and this write
        current["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size}}
        try:
            return await store.update(PVCS, current, subresource="status")
        except Conflict:
            current = await store.get(PVCS, NS, name)


async def create_vm(store: ObjectStore, name: str, claims: list[str], *, container_disk: bool = True) -> dict:
    volumes: list[dict[str, Any]] = [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]
    disks: list[dict[str, Any]] = [{"name": c, "disk": {"bus": "virtio"}} for c in claims]
    if container_disk:
        volumes.insert(0, {"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}})
        disks.insert(0, {"name": "root", "disk": {"bus": "virtio"}})
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": "Halted", "template": {"spec": {
                "domain": {"devices": {"disks": disks}, "resources": {"requests": {"memory": "64Mi"}}},
                "volumes": volumes}}}}
    return await store.create(VMS, body)


async def create_running_vmi(store: ObjectStore, name: str, node: str, *, agent: bool = True,
                             paused: bool = False) -> dict:
    conditions = [{"type": "Ready", "status": "True"}]
    if agent:
        conditions.append({"type": "AgentConnected", "status": "True"})
    if paused:
        conditions.append({"type": "Paused", "status": "True"})
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}}
    created = await store.create(VMIS, body)
    created["status"] = {"phase": "Running", "nodeName": node, "conditions": conditions}
    return await store.update(VMIS, created, subresource="status")


async def create_snapshot(store: ObjectStore, name: str, vm: str, *, deletion_policy: str | None = None,
                          failure_deadline: str | None = None) -> dict:
    spec: dict[str, Any] = {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    if deletion_policy:
        spec["deletionPolicy"] = deletion_policy
    if failure_deadline:
        spec["failureDeadline"] = failure_deadline
    return await store.create(SNAPSHOTS, {"apiVersion": "snapshot.kubevirt.io/v1beta1",
                                          "kind": "VirtualMachineSnapshot",
                                          "metadata": {"name": name, "namespace": NS}, "spec": spec})


async def get(store: ObjectStore, plural: str, name: str) -> dict | None:
    try:
        return await store.get(plural, NS, name)
    except NotFound:
        return None


async def change(store: ObjectStore, plural: str, name: str, edit: Any, *, subresource: str | None = "status") -> None:
    while True:
        obj = await get(store, plural, name)
        if obj is None:
            return
        edit(obj)
        try:
            if subresource:
                await store.update(plural, obj, subresource=subresource)
            else:
                await store.update(plural, obj, has_status_subresource=False)
            return
        except Conflict:
            continue


def qemu_img_format(path: Path) -> str:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True,
                         text=True).stdout
    import json
    return json.loads(out)["format"]


class StandInHandler:
    """A stand-in virt-handler for ``node`` on the bus (not the real one): answers the snapshot
    commands per their contract in shared.events, recording each command's kind in ``log``.

    ``freeze_answers``: False = never answer a Freeze (agent silent); ``backup_gate``: an Event
    the BackupVolumes answer waits for (a leader killed between freeze and thaw);
    ``pvc_root``: where claims' files are (copy source)."""

    def __init__(self, store: ObjectStore, node: str, pvc_root: Path) -> None:
        self.store = store
        self.node = node
        self.pvc_root = pvc_root
        self.log: list[str] = []
        self.freeze_answers = True
        self.backup_gate: asyncio.Event | None = None
        self.frozen = False
        self.jobs: dict[str, str] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.store.bus.subscribe(events.handler_command_subject(self.node), cb=self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _set_frozen(self, cmd: Any, frozen: bool) -> None:
        self.frozen = frozen

        def edit(vmi: dict) -> None:
            status = vmi.setdefault("status", {})
            if frozen:
                status["fsFreezeStatus"] = "frozen"
            else:
                status.pop("fsFreezeStatus", None)
        await change(self.store, VMIS, cmd.name, edit)

    async def _on_msg(self, msg: Any) -> None:
        cmd = events.decode_command(msg.data)
        kind = type(cmd).__name__
        self.log.append(kind)
        result = events.CommandResult()
        if isinstance(cmd, events.Freeze):
            assert cmd.unfreeze_timeout_seconds > 0
            if not self.freeze_answers:
                # the agent never answers: the request times out, while the handler keeps the
                # armed deadline, so the VMI reports fsFreezeStatus frozen (as the real one does)
                await self._set_frozen(cmd, True)
                return
            await self._set_frozen(cmd, True)
        elif isinstance(cmd, events.Unfreeze):
            await self._set_frozen(cmd, False)
        elif isinstance(cmd, events.BackupVolumes):
            if cmd.backup_id not in self.jobs:
                self.jobs[cmd.backup_id] = "Running"
                if self.backup_gate is not None:
                    await self.backup_gate.wait()
                for copy in cmd.volumes:
                    target = Path(copy.target_path)
                    part = target.with_name(target.name + ".part")
                    src = self.pvc_root / cmd.namespace / copy.volume_name / "disk.img"
                    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(src), str(part)], check=True)
                    part.rename(target)
                self.jobs[cmd.backup_id] = "Completed"
            result = events.CommandResult(body={"creationTime": format_time(utc_now())})
        elif isinstance(cmd, events.BackupStatus):
            phase = self.jobs.get(cmd.backup_id, "NotFound")
            result = events.CommandResult(body={"phase": phase, "processedBytes": 1, "totalBytes": 1})
        elif isinstance(cmd, events.AbortBackup):
            self.jobs.pop(cmd.backup_id, None)
        await msg.respond(events.encode(result))
