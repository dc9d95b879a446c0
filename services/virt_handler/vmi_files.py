"""The files virt-handler keeps per VMI: ``<state_dir>/vmis/<uid>/``.

Owns the directory of each VMI (overlays, ISOs, console log, NVRAM), ``vmi.json`` (the VMI as
last started, so a restarted handler can clean up after a VMI that disappeared meanwhile),
``shutdown-started`` (wall-clock seconds when the stop of its domain began: the grace period
survives a handler restart), ``freeze-deadline`` (wall-clock seconds at which a frozen guest is
thawed without an ``Unfreeze``: the unfreeze timeout survives a handler restart) and domain
ownership: a domain is this handler's when the VMI uid in its metadata has a directory here
(created before every define), so handlers sharing one libvirt never touch each other's domains.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec

from services.virt_handler.domain import (
    DEFAULT_PVC_ROOT,
    ConversionContext,
    ImageResolver,
    apply_disk_preparation,
    cleanup,
    compute_domain_xml,
)
from services.virt_handler.hypervisor_types import DomainInfo

log = logging.getLogger(__name__)

VMI_RECORD = "vmi.json"
SHUTDOWN_RECORD = "shutdown-started"
FREEZE_RECORD = "freeze-deadline"


class VmiFiles:
    """The per-VMI directories under ``state_dir`` (see module docstring). ``last_seen`` maps
    a VMI uid to the VMI last seen in the store (preferred to ``vmi.json`` for cleanup);
    ``pvc_root``: where claims' ``<namespace>/<claim>/disk.img`` live (``--pvc-root``)."""

    def __init__(self, state_dir: Path, domain_type: str, images: ImageResolver | None = None, *,
                 pvc_root: Path = DEFAULT_PVC_ROOT):
        self.state_dir = state_dir
        self.pvc_root = pvc_root
        self.domain_type = domain_type
        self.images = images
        self.last_seen: dict[str, dict[str, Any]] = {}

    def vmi_dir(self, uid: str) -> Path:
        """Directory of one VMI's files (overlays, ISOs, console log, ``vmi.json``)."""
        return self.state_dir / "vmis" / uid

    def is_owned(self, domain: DomainInfo) -> bool:
        """Whether this handler made ``domain``: it carries a VMI uid whose directory exists here."""
        return bool(domain.uid) and self.vmi_dir(domain.uid or "").is_dir()

    def context(self, uid: str) -> ConversionContext:
        """The conversion context of the VMI ``uid`` on this node."""
        return ConversionContext(domain_type=self.domain_type, vmi_dir=self.vmi_dir(uid), images=self.images,
                                 pvc_root=self.pvc_root)

    def recorded_vmi(self, uid: str) -> dict[str, Any] | None:
        """The VMI ``uid`` as last seen, else as recorded in ``vmi.json``; None when neither."""
        vmi = self.last_seen.get(uid)
        if vmi is not None:
            return vmi
        try:
            recorded = json.loads((self.vmi_dir(uid) / VMI_RECORD).read_text())
        except (OSError, ValueError):
            return None
        return recorded if isinstance(recorded, dict) else None

    def prepare(self, vmi: dict[str, Any], ctx: ConversionContext) -> str:
        """Create the VMI's directory, record ``vmi.json`` (before any other file, so a handler
        that crashes meanwhile can still clean up), prepare its disks and return the domain XML
        (blocking; raises ``DomainConversionError``/``ImageNotFound``, OSError)."""
        try:
            os.mkdir(ctx.vmi_dir)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the first VMI: <state_dir>/vmis is missing too
            ctx.vmi_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(ctx.vmi_dir / VMI_RECORD, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, msgspec.json.encode(vmi))
        finally:
            os.close(fd)
        apply_disk_preparation(vmi, ctx)
        return compute_domain_xml(vmi, ctx)

    def remove(self, uid: str) -> None:
        """Remove the VMI's files (blocking): volume cleanup from the recorded VMI, then the
        directory. Failures of the cleanup are logged, never raised."""
        vmi = self.recorded_vmi(uid)
        if vmi is not None:
            try:
                cleanup(vmi, self.context(uid))
            except Exception as err:  # noqa: BLE001 - cleanup must not block removal; leftovers are logged
                log.warning("cleanup of VMI %s files failed: %s", uid, err)
        shutil.rmtree(self.vmi_dir(uid), ignore_errors=True)
        self.last_seen.pop(uid, None)

    def read_shutdown_started(self, uid: str) -> float | None:
        """When the stop of the VMI's domain began (wall-clock seconds), None before."""
        try:
            return float((self.vmi_dir(uid) / SHUTDOWN_RECORD).read_text())
        except (OSError, ValueError):
            return None

    def write_shutdown_started(self, uid: str, moment: float) -> None:
        """Record that the stop of the VMI's domain began at ``moment``."""
        record = self.vmi_dir(uid) / SHUTDOWN_RECORD
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(repr(moment))

    def read_freeze_deadline(self, uid: str) -> float | None:
        """The recorded unfreeze deadline of the VMI ``uid`` (epoch seconds), None when none is armed."""
        try:
            return float((self.vmi_dir(uid) / FREEZE_RECORD).read_text())
        except (OSError, ValueError):
            return None

    def write_freeze_deadline(self, uid: str, deadline: float) -> None:
        """Record the unfreeze ``deadline`` atomically (temporary file, fsync, rename, fsync of
        the directory): after a crash the record is either the old one or the new one, whole.
        Raises OSError (e.g. the VMI's directory is gone)."""
        directory = self.vmi_dir(uid)
        temporary = directory / f".{FREEZE_RECORD}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, repr(deadline).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, directory / FREEZE_RECORD)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove_freeze_deadline(self, uid: str) -> None:
        """Drop the recorded unfreeze deadline (absent: nothing to do)."""
        try:
            os.unlink(self.vmi_dir(uid) / FREEZE_RECORD)
        except FileNotFoundError:
            pass

    def uids_with_freeze_deadline(self) -> list[str]:
        """The VMI uids whose directory holds an unfreeze deadline (start-up recovery)."""
        return sorted(p.parent.name for p in (self.state_dir / "vmis").glob(f"*/{FREEZE_RECORD}"))
