"""Pure parts of the demo guest builder: module dependency order, image import names."""

from __future__ import annotations

from pathlib import Path

import pytest

from guest import demo_guest
from shared.images import ImageStore


def make_module(root: Path, rel: str, depends: str) -> None:
    path = root / "kernel" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF....\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=6.1\0")


@pytest.fixture
def modules(tmp_path):
    make_module(tmp_path, "drivers/virtio/virtio_ring.ko", "")
    make_module(tmp_path, "drivers/virtio/virtio.ko", "virtio_ring")
    make_module(tmp_path, "drivers/virtio/virtio_pci.ko", "virtio,virtio_ring")
    make_module(tmp_path, "drivers/net/virtio_net.ko", "virtio,net_failover,virtio_ring")
    make_module(tmp_path, "drivers/net/net_failover.ko", "failover")
    make_module(tmp_path, "net/core/failover.ko", "")
    make_module(tmp_path, "drivers/char/hw_random/virtio-rng.ko", "virtio")
    return tmp_path


@pytest.mark.parametrize(("wanted", "expected"), [
    pytest.param(("virtio_pci",), ["virtio_ring", "virtio", "virtio_pci"], id="deps-first"),
    pytest.param(("virtio_net",), ["virtio_ring", "virtio", "failover", "net_failover", "virtio_net"],
                 id="transitive"),
    pytest.param(("virtio_rng", "virtio_pci"), ["virtio_ring", "virtio", "virtio-rng", "virtio_pci"],
                 id="dash-and-underscore-names"),
    pytest.param(("ahci", "virtio"), ["virtio_ring", "virtio"], id="missing-or-builtin-skipped"),
])
def test_module_closure_in_dependency_order(modules, wanted, expected):
    names = [Path(rel).name.removesuffix(".ko") for rel in demo_guest.compute_module_closure(modules, wanted)]
    assert names == expected


def test_init_script_prints_the_banner_starts_the_agent_and_a_console_shell():
    init = (demo_guest.GUEST_DIR / "init.sh").read_text()
    for needle in ('echo "kubevirt-py demo guest"', "org.qemu.guest_agent.0", "qemu-ga -d -m virtio-serial",
                   "acpid", "setsid cttyhack sh", "udhcpc"):
        assert needle in init
    assert "poweroff -f" in (demo_guest.GUEST_DIR / "poweroff.sh").read_text()


def test_init_script_mounts_data_disks_by_serial_and_the_agent_logs_freeze_and_thaw():
    init = (demo_guest.GUEST_DIR / "init.sh").read_text()
    for needle in ('serial=$(cat "$blk/serial"', 'mount -t ext4 "$dev" "/data/$serial"',
                   'cmp -s -n 65536 "$dev" /dev/zero', "mke2fs -q", "syslogd -C",
                   "-F/etc/qemu/fsfreeze-hook"):
        assert needle in init
    # a disk with a serial never takes /mnt (the first ext4 disk without one keeps it)
    assert init.index('/serial" 2>/dev/null)" ] && continue') < init.index('mount -t ext4 "$dev" /mnt')
    hook = (demo_guest.GUEST_DIR / "fsfreeze-hook.sh").read_text()
    assert hook.startswith("#!/bin/sh\n") and 'logger -t qemu-ga "fsfreeze-hook: $1"' in hook
    # logged first, then held as many seconds as /run/fsfreeze-hold says (bounded, consumed)
    assert hook.index("logger") < hook.index('hold=$(cat /run/fsfreeze-hold)') < hook.index('sleep "$hold"')
    assert '[ "$hold" -gt 120 ] && hold=120' in hook and "rm -f /run/fsfreeze-hold" in hook
    assert "umount \"$m\"" in (demo_guest.GUEST_DIR / "poweroff.sh").read_text()


def test_import_names(tmp_path):
    files = tmp_path / "f"
    files.mkdir()
    for name in ("vmlinuz", "initramfs.gz", "disk.qcow2"):
        (files / name).write_bytes(name.encode())
    guest = demo_guest.DemoGuest(kernel=files / "vmlinuz", initramfs=files / "initramfs.gz", disk=files / "disk.qcow2",
                                 kernel_version="6.1.0-test", cmdline="console=ttyS0")
    store = ImageStore(tmp_path / "images")
    refs = demo_guest.apply_demo_guest_import(store, guest, conformance_names=True)
    assert demo_guest.DEMO_DISK_REF in refs and demo_guest.DEMO_KERNEL_REF in refs
    demo = store.resolve(demo_guest.DEMO_DISK_REF)
    assert demo.kernel.read_bytes() == b"vmlinuz" and demo.cmdline == "console=ttyS0"
    alpine = store.resolve("registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel")
    assert alpine.path("/boot/vmlinuz-virt").read_bytes() == b"vmlinuz"
    assert alpine.path("/boot/initramfs-virt").read_bytes() == b"initramfs.gz"
    assert store.is_present("registry:5000/kubevirt/cirros-container-disk-demo:devel")
