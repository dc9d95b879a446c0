"""A claim's disk is adopted only when its ``claim-uid`` marker names that claim (qemu-img)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.virt_snapshot import local_volumes

async def test_a_disk_without_a_marker_is_replaced_then_owned(tmp_path: Path) -> None:
    disk = local_volumes.claim_disk(tmp_path, "default", "data")
    disk.parent.mkdir(parents=True)
    disk.write_bytes(b"old installation's data")
    assert not local_volumes.owned_disk_exists(disk, "u-2")
    await local_volumes.create_disk(disk, 2**20, owner_uid="u-2")
    assert await local_volumes.virtual_size(disk) == 2**20
    assert local_volumes.owner_of(disk) == "u-2"
    assert local_volumes.owned_disk_exists(disk, "u-2")
    assert not local_volumes.owned_disk_exists(disk, "u-3")
    assert not disk.with_name("disk.img.part").exists()


async def test_the_owners_disk_is_kept(tmp_path: Path) -> None:
    disk = local_volumes.claim_disk(tmp_path, "default", "data")
    await local_volumes.create_disk(disk, 2**20, owner_uid="u-1")
    inode = disk.stat().st_ino
    await local_volumes.create_disk(disk, 4 * 2**20, owner_uid="u-1")
    assert disk.stat().st_ino == inode and await local_volumes.virtual_size(disk) == 2**20


async def test_a_failed_create_leaves_no_directory(tmp_path: Path) -> None:
    disk = local_volumes.claim_disk(tmp_path, "default", "huge")
    with pytest.raises(local_volumes.VolumeFileError, match="too large"):
        await local_volumes.create_disk(disk, 2**51 + 2**16, owner_uid="u-1")
    assert not disk.parent.exists()
