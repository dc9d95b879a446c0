"""What every virt-snapshot controller shares: the informers, the store writer's dependencies,
the event recorder, the clock, the VolumeSnapshotter, the handler client and the directories.

:class:`SnapshotParts` is built once by :class:`services.virt_snapshot.manager.SnapshotManager`
and handed to each controller's constructor; controllers never build informers of their own, so
every loop reads the same caches (and sees the others' writes assumed into them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.virt_snapshot.handler_client import HandlerClient
from services.virt_snapshot.volume_snapshotter import VolumeSnapshotter
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.clock import Clock
from shared.events_recorder import EventRecorder
from shared.informer import Informer

VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
SNAPSHOTS = "virtualmachinesnapshots"
CONTENTS = "virtualmachinesnapshotcontents"
RESTORES = "virtualmachinerestores"
PVCS = "persistentvolumeclaims"


@dataclass
class SnapshotParts:
    """Shared dependencies of the virt-snapshot controllers.

    Attributes:
        store: ObjectStore (CAS writes: ``update``/``create``/``delete``).
        vms, vmis, snapshots, contents, restores, pvcs: typed informers (started by the manager).
        recorder: EventRecorder of component ``virt-snapshot``.
        clock: wall clock (deadlines).
        snapshotter: the VolumeSnapshotter (embedded or CSI).
        handlers: request/reply to virt-handlers (Freeze/Unfreeze/Backup*), None without a bus.
        storage_dir: the installation's state directory.
        pvc_root: ``<storage_dir>/pvcs`` (claims: ``<pvc_root>/<ns>/<claim>/disk.img``).
        copies_dir: ``<storage_dir>/volume-snapshots`` (copies: ``<copies_dir>/<ns>/<name>.qcow2``).
    """

    store: Any
    vms: Informer[VirtualMachine]
    vmis: Informer[VirtualMachineInstance]
    snapshots: Informer[VirtualMachineSnapshot]
    contents: Informer[VirtualMachineSnapshotContent]
    restores: Informer[VirtualMachineRestore]
    pvcs: Informer[PersistentVolumeClaim]
    recorder: EventRecorder
    clock: Clock
    snapshotter: VolumeSnapshotter
    handlers: HandlerClient | None
    storage_dir: Path
    pvc_root: Path
    copies_dir: Path
