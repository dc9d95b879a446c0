"""Effects that must happen before a domain can start, and their undoing.

Owns: :func:`apply_disk_preparation` (qcow2 overlays and empty disks with ``qemu-img``,
sparse hostDisk files for ``DiskOrCreate``, cloud-init ISOs) and :func:`cleanup` (removes
exactly the files the VMI owns). Both read the same plan as the converter
(:func:`.volumes.compute_volume_plans`). :func:`is_direct_io_supported` probes O_DIRECT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .cloudinit import apply_cloud_init_iso, compute_cloud_init_files
from .configurators.console import CONSOLE_LOG
from .context import ConversionContext
from .errors import DomainConversionError
from .volumes import VolumePlan, compute_volume_plans

QEMU_IMG_TIMEOUT = 60


def _qemu_img(*args: str) -> None:
    binary = shutil.which("qemu-img")
    if binary is None:
        raise DomainConversionError("DiskPreparationFailed", "qemu-img is not installed (package qemu-utils)")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT)
    if result.returncode != 0:
        raise DomainConversionError("DiskPreparationFailed",
                                    f"qemu-img {' '.join(args)} failed: {result.stderr.strip()}")


def apply_volume(plan: VolumePlan, vmi: dict) -> None:
    """Create the file of one plan (no-op for plans without ``create``). Idempotent for files
    that already exist (a restarted handler must not wipe a running guest's overlay)."""
    if plan.create is None or (plan.create in ("overlay", "empty", "hostdisk") and plan.path.exists()):
        return
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    if plan.create == "overlay":
        _qemu_img("create", "-q", "-f", "qcow2", "-F", plan.backing_format or "raw", "-b", str(plan.backing),
                  str(plan.path))
    elif plan.create == "empty":
        _qemu_img("create", "-q", "-f", "qcow2", str(plan.path), str(plan.capacity))
    elif plan.create == "hostdisk":
        with open(plan.path, "wb") as f:
            f.truncate(plan.capacity or 0)
    elif plan.create in ("nocloud", "configdrive"):
        label, files = compute_cloud_init_files(vmi, plan.volume, f"spec.volumes[name={plan.volume['name']}]")
        apply_cloud_init_iso(plan.path, label, files)
    os.chmod(plan.path, 0o644)


def compute_untraversable(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that others cannot traverse (no ``o+x``), or None.

    QEMU runs as ``libvirt-qemu`` on Debian, so overlays, ISOs and backing files must sit
    below directories it can enter (pytest's ``/tmp/pytest-of-root`` is 0700, for example).
    """
    for directory in reversed(Path(path).absolute().parents):
        try:
            if not directory.stat().st_mode & 0o001:
                return directory
        except FileNotFoundError:
            return None
    return None


def apply_disk_preparation(vmi: dict, ctx: ConversionContext) -> None:
    """Make every file the domain XML names; ``ctx.vmi_dir`` is created (mode 0755) if missing.

    Raises DomainConversionError (reasons of the plan, or ``DiskPreparationFailed``, also when
    QEMU could not reach the VMI directory or an image's files through a 0700 directory).
    """
    ctx.vmi_dir.mkdir(parents=True, exist_ok=True)
    ctx.vmi_dir.chmod(0o755)
    plans = compute_volume_plans(vmi, ctx)
    if ctx.domain_type != "test":
        for path in [ctx.vmi_dir / "x", *(p.backing for p in plans if p.backing is not None)]:
            blocked = compute_untraversable(path)
            if blocked is not None:
                raise DomainConversionError(
                    "DiskPreparationFailed",
                    f"{path.parent} is below {blocked} (mode {blocked.stat().st_mode & 0o777:o}), "
                    "which the QEMU user cannot enter; use a state directory with o+x on every parent")
    for plan in plans:
        apply_volume(plan, vmi)


def cleanup(vmi: dict, ctx: ConversionContext) -> None:
    """Remove the files this VMI owns (overlays, empty disks, ISOs, NVRAM, console log) and
    ``ctx.vmi_dir`` when it is then empty. hostDisk files and PVCs stay. Never raises for
    files that are already gone; a plan that cannot be computed any more (image removed)
    falls back to removing the known file names in ``vmi_dir``."""
    try:
        owned = [p.path for p in compute_volume_plans(vmi, ctx) if p.owned]
    except DomainConversionError:
        owned = [p for p in ctx.vmi_dir.glob("disk-*.qcow2")] + [p for p in ctx.vmi_dir.glob("empty-*.qcow2")]
        owned += [ctx.vmi_dir / "noCloud.iso", ctx.vmi_dir / "configdrive.iso"]
    for path in [*owned, ctx.vmi_dir / "nvram.fd", ctx.vmi_dir / CONSOLE_LOG]:
        try:
            Path(path).unlink()
        except FileNotFoundError:
            pass
    try:
        ctx.vmi_dir.rmdir()
    except OSError:
        pass


def is_direct_io_supported(directory: Path) -> bool:
    """True when files in ``directory`` can be opened with O_DIRECT (tmpfs cannot)."""
    probe = Path(directory) / ".direct-io-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    else:
        os.close(fd)
        return True
    finally:
        try:
            probe.unlink()
        except FileNotFoundError:
            pass
