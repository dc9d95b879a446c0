"""The files behind the local provisioner's claims (qemu-img in a subprocess).

Layout (snapshot-design "Files on disk"): a claim is ``<pvc-root>/<namespace>/<claim>/disk.img``,
a qcow2 whose virtual size is the granted capacity; a volume copy is
``<copies-dir>/<namespace>/<volumeSnapshotName>.qcow2``. Every file is written as
``<final>.part`` and renamed when complete, so a file without ``.part`` is always whole and a
crashed provisioner simply starts the ``.part`` again.

Errors: :class:`VolumeFileError` (qemu-img's stderr) when a command fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

DISK_FILE = "disk.img"
PART_SUFFIX = ".part"
COPY_SUFFIX = ".qcow2"


class VolumeFileError(Exception):
    """A qemu-img command failed (message: the command and its stderr)."""


def claim_dir(pvc_root: Path, namespace: str, name: str) -> Path:
    """``<pvc-root>/<namespace>/<name>``."""
    return pvc_root / namespace / name


def claim_disk(pvc_root: Path, namespace: str, name: str) -> Path:
    """``<pvc-root>/<namespace>/<name>/disk.img``."""
    return claim_dir(pvc_root, namespace, name) / DISK_FILE


def copy_path(copies_dir: Path, namespace: str, volume_snapshot_name: str) -> Path:
    """``<copies-dir>/<namespace>/<volumeSnapshotName>.qcow2`` (complete copies only)."""
    return copies_dir / namespace / f"{volume_snapshot_name}{COPY_SUFFIX}"


def _part(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


async def _qemu_img(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise VolumeFileError(f"qemu-img {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def virtual_size(path: Path) -> int:
    """The virtual size (bytes) of the image at ``path``."""
    info = json.loads(await _qemu_img("info", "--output=json", "-U", str(path)))
    return int(info["virtual-size"])


async def create_disk(path: Path, size_bytes: int) -> None:
    """An empty qcow2 of ``size_bytes`` at ``path`` (nothing done when it exists)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    part = _part(path)
    part.unlink(missing_ok=True)
    await _qemu_img("create", "-q", "-f", "qcow2", str(part), str(size_bytes))
    os.replace(part, path)


async def copy_disk(source: Path, path: Path, size_bytes: int) -> int:
    """``path`` as a qcow2 copy of ``source``, grown to ``size_bytes`` when the copy is smaller;
    returns the final virtual size (nothing copied when ``path`` exists)."""
    if path.exists():
        return await virtual_size(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = _part(path)
    part.unlink(missing_ok=True)
    await _qemu_img("convert", "-q", "-O", "qcow2", str(source), str(part))
    size = await virtual_size(part)
    if size_bytes > size:
        await _qemu_img("resize", "-q", str(part), str(size_bytes))
        size = size_bytes
    os.replace(part, path)
    return size


async def remove_claim(pvc_root: Path, namespace: str, name: str) -> None:
    """Remove the claim's directory (missing is fine)."""
    await asyncio.to_thread(shutil.rmtree, claim_dir(pvc_root, namespace, name), True)
