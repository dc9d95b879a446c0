"""``virtctl down --wipe``: the claims' disks and the volume copies go with the rest, and whatever
either kind of installation (one machine, hosts) wrote there."""

from __future__ import annotations

from pathlib import Path

from services.virtctl.installation import wipe
from services.virtctl.layout import Layout


def _layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "state", 1, 2, 3)


def test_wipe_removes_claim_disks_and_volume_copies(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    disk = layout.pvcs_dir / "default" / "data" / "disk.img"
    copy = layout.volume_snapshots_dir / "default" / "vmsnapshot-x-volume-disk0.qcow2"
    for path in (disk, copy, layout.logs_dir / "virt-api.log", layout.state_dir / "installation.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert wipe(layout) == []
    assert not layout.state_dir.exists()


def test_wipe_keeps_files_it_did_not_write(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    foreign = layout.state_dir / "mine.txt"
    (layout.pvcs_dir / "default" / "data").mkdir(parents=True)
    (layout.pvcs_dir / "default" / "data" / "disk.img").write_bytes(b"x")
    foreign.write_text("keep")
    assert wipe(layout) == []
    assert foreign.read_text() == "keep"
    assert sorted(p.name for p in layout.state_dir.iterdir()) == ["mine.txt"]


def test_wipe_of_hosts_removes_an_earlier_one_machine_installations_leftovers(tmp_path: Path) -> None:
    # a hosts installation made where a one-machine one ran with --nodes 2 before (down without --wipe)
    layout = _layout(tmp_path)
    written = [layout.state_dir / "hosts" / "hosts.json", layout.state_dir / "hosts" / "host1" / "nats" / "x",
               layout.handler_dir / "domain-type", layout.state_dir / "virt-controller" / "x",
               layout.state_dir / "nodes" / "nodes.json", layout.nats_dir / "jetstream" / "x",
               layout.nats_dir / "credentials" / "virt-api.json", layout.kubeconfig]
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (layout.handler_dir / "vmis").mkdir()
    assert wipe(layout) == []
    assert not layout.state_dir.exists()
