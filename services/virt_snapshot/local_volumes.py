"""The files behind the local provisioner's claims (qemu-img in a subprocess).

Layout (snapshot-design "Files on disk"): a claim is ``<pvc-root>/<namespace>/<claim>/disk.img``,
a qcow2 whose virtual size is the granted capacity; a volume copy is
``<copies-dir>/<namespace>/<volumeSnapshotName>.qcow2``. Every file is written as
``<final>.part`` and renamed when complete, so a file without ``.part`` is always whole and a
crashed provisioner simply starts the ``.part`` again.

Ownership: next to ``disk.img`` the file ``claim-uid`` holds the uid of the claim the disk was
made for, written only after the disk is complete. A disk whose marker is missing or names
another uid (a deleted claim's leftover, an older installation's disk) is never adopted: it is
replaced by a fresh file for the new claim, so a re-created claim of the same name never sees
the data of the old one.

Errors: :class:`VolumeFileError` (qemu-img's stderr) when a command fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

DISK_FILE = "disk.img"
PART_SUFFIX = ".part"
COPY_SUFFIX = ".qcow2"
OWNER_FILE = "claim-uid"


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


def owner_of(disk: Path) -> str | None:
    """The claim uid recorded next to ``disk`` (None when there is no marker)."""
    try:
        return (disk.parent / OWNER_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def owned_disk_exists(disk: Path, owner_uid: str) -> bool:
    """Whether ``disk`` is complete and was made for the claim with uid ``owner_uid``."""
    return bool(owner_uid) and disk.exists() and owner_of(disk) == owner_uid


def _disown(disk: Path) -> None:
    """Drop the marker of a disk that is about to be replaced (before the new file goes in)."""
    (disk.parent / OWNER_FILE).unlink(missing_ok=True)


def _own(disk: Path, owner_uid: str) -> None:
    marker = disk.parent / OWNER_FILE
    part = part_path(marker)
    part.write_text(owner_uid + "\n")
    os.replace(part, marker)


def free_bytes(directory: Path) -> int:
    """Free bytes (for an unprivileged writer) of the filesystem holding ``directory`` (or its
    nearest existing parent when it does not exist yet)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _drop_failed(part: Path) -> None:
    """After a failed qemu-img: remove the ``.part`` and the claim's directory when left empty."""
    part.unlink(missing_ok=True)
    try:
        part.parent.rmdir()
    except OSError:
        pass


def part_path(path: Path) -> Path:
    """The in-progress name of ``path``: ``<path>.part``."""
    return path.with_name(path.name + PART_SUFFIX)


async def run_qemu_img(*args: str) -> str:
    """``qemu-img <args>``; returns its standard output. Raises :class:`VolumeFileError` with the
    command and its stderr when it fails; a cancelled caller kills the command (no orphan keeps
    writing a file after a leader lost its lease)."""
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise VolumeFileError(f"qemu-img {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def virtual_size(path: Path) -> int:
    """The virtual size (bytes) of the image at ``path``."""
    info = json.loads(await run_qemu_img("info", "--output=json", "-U", str(path)))
    return int(info["virtual-size"])


async def create_disk(path: Path, size_bytes: int, *, owner_uid: str) -> None:
    """An empty qcow2 of ``size_bytes`` at ``path`` made for claim ``owner_uid`` (nothing done when
    that claim's disk is already there; a disk of another claim is replaced)."""
    if owned_disk_exists(path, owner_uid):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _disown(path)
    part = part_path(path)
    part.unlink(missing_ok=True)
    try:
        await run_qemu_img("create", "-q", "-f", "qcow2", str(part), str(size_bytes))
    except VolumeFileError:
        _drop_failed(part)
        raise
    os.replace(part, path)
    _own(path, owner_uid)


async def copy_disk(source: Path, path: Path, size_bytes: int, *, owner_uid: str) -> int:
    """``path`` as a qcow2 copy of ``source`` made for claim ``owner_uid``, grown to ``size_bytes``
    when the copy is smaller; returns the final virtual size (nothing copied when that claim's
    disk is already there; a disk of another claim is replaced)."""
    if owned_disk_exists(path, owner_uid):
        return await virtual_size(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _disown(path)
    part = part_path(path)
    part.unlink(missing_ok=True)
    try:
        await run_qemu_img("convert", "-q", "-O", "qcow2", str(source), str(part))
        size = await virtual_size(part)
        if size_bytes > size:
            await run_qemu_img("resize", "-q", str(part), str(size_bytes))
            size = size_bytes
    except VolumeFileError:
        _drop_failed(part)
        raise
    os.replace(part, path)
    _own(path, owner_uid)
    return size


async def remove_claim(pvc_root: Path, namespace: str, name: str) -> None:
    """Remove the claim's directory (missing is fine)."""
    await asyncio.to_thread(shutil.rmtree, claim_dir(pvc_root, namespace, name), True)
