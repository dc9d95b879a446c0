"""The embedded VolumeSnapshotter: qcow2 copies of the claims' files in the state directory.

Claims are ``<pvc_root>/<ns>/<claim>/disk.img``; copies ``<copies_dir>/<ns>/<name>.qcow2``,
written as ``<name>.qcow2.part`` and renamed when complete (a file without ``.part`` is always
whole).

- VM not running (``request.node`` None): ``qemu-img convert -O qcow2 <disk.img> <copy>.part``,
  then rename, as asyncio subprocesses of this process. A new leader that finds neither the copy
  nor a running task of its own starts the copy again (the VM is stopped: the data has not
  changed since the point in time).
- VM running: the VMI's virt-handler copies (``BackupVolumes``: one libvirt push backup of all
  the disks, atomic across them; ``BackupStatus`` to poll; ``AbortBackup`` to cancel), targets
  being the copy paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from services.virt_snapshot.handler_client import HandlerClient, HandlerUnavailable
from services.virt_snapshot.local_volumes import VolumeFileError, claim_disk, copy_path, part_path, run_qemu_img
from services.virt_snapshot.store_claims import StoreClaims
from services.virt_snapshot.volume_snapshotter import (
    ClaimState,
    CopyStatus,
    SnapshotRequest,
    SnapshotterError,
)
from shared import events, tracing
from shared.api.storage import TypedLocalObjectReference
from shared.api.vocabulary import format_time, utc_now

log = logging.getLogger(__name__)

SERVICE = "virt-snapshot"

class EmbeddedSnapshotter:
    """qcow2 copies of claims (see the module docstring).

    Args:
        pvc_root: directory of the claims' files.
        copies_dir: directory of the copies.
        handlers: HandlerClient for running VMs (None: only stopped VMs can be snapshotted).
        claims: the restored claims in the store (:class:`StoreClaims` on the PVC informer).
    """

    def __init__(self, *, pvc_root: Path, copies_dir: Path, handlers: HandlerClient | None,
                 claims: StoreClaims) -> None:
        self.claims = claims
        self.claim_poll_interval: float | None = claims.claim_poll_interval
        self.pvc_root = Path(pvc_root)
        self.copies_dir = Path(copies_dir)
        self.handlers = handlers
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._errors: dict[tuple[str, str], str] = {}

    # -- paths ---------------------------------------------------------------------------------
    def _copy(self, namespace: str, name: str) -> Path:
        return copy_path(self.copies_dir, namespace, name)

    def _copies(self, request: SnapshotRequest) -> list[events.VolumeCopy]:
        return [events.VolumeCopy(volume_name=v.volume_name,
                                  target_path=str(self._copy(request.namespace, v.volume_snapshot_name)))
                for v in request.volumes]

    # -- offline copies ------------------------------------------------------------------------
    def _start_copy(self, namespace: str, claim: str, name: str) -> None:
        key = (namespace, name)
        task = self._tasks.get(key)
        if task is not None and not task.done():
            return
        self._errors.pop(key, None)
        self._tasks[key] = asyncio.create_task(self._run_copy(namespace, claim, name), name=f"copy-{name}")

    async def _run_copy(self, namespace: str, claim: str, name: str) -> None:
        source = claim_disk(self.pvc_root, namespace, claim)
        final = self._copy(namespace, name)
        part = part_path(final)
        with tracing.child_span(SERVICE, f"copy {name}", attributes={"kubevirt.claim": claim}):
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                await run_qemu_img("convert", "-O", "qcow2", str(source), str(part))
                part.rename(final)
            except asyncio.CancelledError:
                part.unlink(missing_ok=True)
                raise
            except (VolumeFileError, OSError) as err:
                part.unlink(missing_ok=True)
                self._errors[(namespace, name)] = str(err)

    # -- the interface -------------------------------------------------------------------------
    async def begin(self, request: SnapshotRequest) -> str:
        """Start every copy; the point in time is now (stopped VM) or the handler's answer."""
        if request.node is None:
            for volume in request.volumes:
                source = claim_disk(self.pvc_root, request.namespace, volume.claim_name)
                if not source.exists():
                    raise SnapshotterError(f"claim {volume.claim_name} has no disk image at {source}")
            for volume in request.volumes:
                if not self._copy(request.namespace, volume.volume_snapshot_name).exists():
                    self._start_copy(request.namespace, volume.claim_name, volume.volume_snapshot_name)
            return format_time(utc_now())
        for volume in request.volumes:
            self._copy(request.namespace, volume.volume_snapshot_name).parent.mkdir(parents=True, exist_ok=True)
        result = await self._send(request, events.BackupVolumes(
            namespace=request.namespace, name=request.vmi_name or request.vm_name, uid=request.vmi_uid or "",
            backup_id=request.snapshot_uid, volumes=self._copies(request)))
        if not result.ok:
            raise SnapshotterError(result.message or f"backup refused: {result.reason}")
        return str((result.body or {}).get("creationTime") or format_time(utc_now()))

    async def poll(self, request: SnapshotRequest) -> list[CopyStatus]:
        """Each copy: ready when its final file exists; else running, failed or restarted."""
        finals = {v.volume_snapshot_name: self._copy(request.namespace, v.volume_snapshot_name)
                  for v in request.volumes}
        if all(p.exists() for p in finals.values()):
            return [CopyStatus(volume_snapshot_name=n, ready=True) for n in finals]
        if request.node is None:
            out: list[CopyStatus] = []
            for volume in request.volumes:
                key = (request.namespace, volume.volume_snapshot_name)
                if finals[volume.volume_snapshot_name].exists():
                    out.append(CopyStatus(volume_snapshot_name=volume.volume_snapshot_name, ready=True))
                    continue
                copy_error = self._errors.get(key)
                task = self._tasks.get(key)
                if copy_error is None and (task is None or task.done()):
                    self._start_copy(request.namespace, volume.claim_name, volume.volume_snapshot_name)
                out.append(CopyStatus(volume_snapshot_name=volume.volume_snapshot_name, ready=False, error=copy_error))
            return out
        result = await self._send(request, events.BackupStatus(
            namespace=request.namespace, name=request.vmi_name or request.vm_name, uid=request.vmi_uid or "",
            backup_id=request.snapshot_uid, volumes=self._copies(request)))
        body = result.body or {}
        phase = body.get("phase")
        error: str | None = None
        if not result.ok:
            error = result.message or f"backup status refused: {result.reason}"
        elif phase == "Failed":
            error = str(body.get("message") or "backup failed")
        elif phase == "NotFound":
            error = "backup job not found on the node"
        total, processed = int(body.get("totalBytes") or 0), int(body.get("processedBytes") or 0)
        return [CopyStatus(volume_snapshot_name=n, ready=p.exists() and phase in ("Completed", "NotFound"),
                           error=None if p.exists() else error, processed_bytes=processed, total_bytes=total)
                for n, p in finals.items()]

    async def cancel(self, request: SnapshotRequest) -> None:
        """Abort the handler's job (running VM) or this process's copies; drop ``.part`` files."""
        for volume in request.volumes:
            task = self._tasks.pop((request.namespace, volume.volume_snapshot_name), None)
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if request.node is not None and self.handlers is not None:
            try:
                await self._send(request, events.AbortBackup(
                    namespace=request.namespace, name=request.vmi_name or request.vm_name,
                    uid=request.vmi_uid or "", backup_id=request.snapshot_uid, volumes=self._copies(request)))
            except SnapshotterError as err:
                log.warning("abort backup %s: %s", request.snapshot_uid, err.message)
        for volume in request.volumes:
            part_path(self._copy(request.namespace, volume.volume_snapshot_name)).unlink(missing_ok=True)

    async def delete(self, namespace: str, volume_snapshot_names: list[str]) -> None:
        """Remove the copies and any partial files."""
        for name in volume_snapshot_names:
            task = self._tasks.pop((namespace, name), None)
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            final = self._copy(namespace, name)
            part_path(final).unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            self._errors.pop((namespace, name), None)

    # -- restored claims: in the store (StoreClaims) ---------------------------------------------
    def claim_data_source(self, volume_snapshot_name: str) -> TypedLocalObjectReference:
        """``{snapshot.storage.k8s.io, VolumeSnapshot, name}`` (the provisioner copies that file)."""
        return self.claims.claim_data_source(volume_snapshot_name)

    async def read_claim(self, namespace: str, name: str) -> ClaimState | None:
        """The claim as the PVC informer has it (:meth:`StoreClaims.read_claim`)."""
        return await self.claims.read_claim(namespace, name)

    async def create_claim(self, body: dict[str, Any]) -> None:
        """Create the claim in the store; the local provisioner binds it."""
        await self.claims.create_claim(body)

    async def delete_claim(self, namespace: str, name: str) -> None:
        """Delete the claim from the store (the provisioner removes its file)."""
        await self.claims.delete_claim(namespace, name)

    async def _send(self, request: SnapshotRequest, command: object) -> events.CommandResult:
        if self.handlers is None or request.node is None:
            raise SnapshotterError("no bus to reach the VMI's node", retryable=False)
        try:
            return await self.handlers.send(request.node, command)
        except HandlerUnavailable as err:
            raise SnapshotterError(str(err)) from None
