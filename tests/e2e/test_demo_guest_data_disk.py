"""The demo guest mounts a PVC data disk (a virtio disk with a ``serial``) at ``/data/<serial>``,
formats it when blank, and the guest agent's fsfreeze covers it.

Boots the demo guest (containerDisk + a blank ``persistentVolumeClaim`` disk whose KubeVirt disk
``serial`` is ``data1``) from a converted VMI on ``qemu:///system``, as
``test_demo_guest_boots.py`` does, then checks through the guest agent: the disk is formatted
once and mounted at ``/data/data1``; a file written there survives a cold restart of the domain;
``guest-fsfreeze-freeze`` freezes it (and ``/mnt``), a write blocks until the thaw; the guest's
syslog shows qemu-ga's freeze and thaw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.e2e

libvirt = pytest.importorskip("libvirt")

from guest.demo_guest import DEMO_DISK_REF, apply_demo_guest_build, apply_demo_guest_import  # noqa: E402
from services.virt_handler import kvm_probe  # noqa: E402
from services.virt_handler.domain import (CONSOLE_LOG, ConversionContext, apply_disk_preparation,  # noqa: E402
                                          cleanup, compute_domain_xml)
from shared.images import ImageStore  # noqa: E402
from tests.e2e.e2e_helpers import needs_qemu, wait_for  # noqa: E402
from tests.e2e.guest_agent import AgentShell  # noqa: E402

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
BOOT_TIMEOUT = 120


@pytest.fixture
def node_dir():
    path = Path(tempfile.mkdtemp(prefix="kubevirt-py-e2e-disk-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _boot(conn, xml: str, log: Path):
    domain = conn.defineXML(xml)
    domain.create()
    wait_for(lambda: log.exists() and b"demo guest ready" in log.read_bytes(), BOOT_TIMEOUT, 0.5,
             what=f"'demo guest ready' in {log}")
    return domain


@needs_qemu
def test_blank_pvc_disk_is_formatted_mounted_at_its_serial_and_frozen_by_the_agent(node_dir, system_libvirtd):
    CACHE.mkdir(parents=True, exist_ok=True)
    store = ImageStore(node_dir / "images")
    apply_demo_guest_import(store, apply_demo_guest_build(CACHE))
    namespace, name = f"e2e-{uuid.uuid4().hex[:8]}", "disk"
    claim_dir = node_dir / "pvcs" / namespace / "data"
    claim_dir.mkdir(parents=True)
    disk = claim_dir / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "256M"], check=True)
    for path in (node_dir / "pvcs", node_dir / "pvcs" / namespace, claim_dir):
        path.chmod(0o755)
    disk.chmod(0o666)
    vmi = {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {"domain": {"memory": {"guest": "256Mi"},
                            "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                                  {"name": "data", "serial": "data1", "disk": {"bus": "virtio"}}]}},
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}},
                             {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
    }
    ctx = ConversionContext(domain_type=kvm_probe.compute_domain_type(), vmi_dir=node_dir / "vmis" / namespace / name,
                            images=store, pvc_root=node_dir / "pvcs")
    apply_disk_preparation(vmi, ctx)
    xml = compute_domain_xml(vmi, ctx)
    (pvc_disk,) = [d for d in ElementTree.fromstring(xml).iter("disk")
                   if (d.find("source") is not None and d.find("source").get("file") == str(disk))]
    assert pvc_disk.findtext("serial") == "data1"
    assert pvc_disk.find("driver").get("type") == "qcow2"  # the format of the claim's file, detected
    log = ctx.vmi_dir / CONSOLE_LOG
    conn = libvirt.open("qemu:///system")
    domain = None
    try:
        domain = _boot(conn, xml, log)
        console = log.read_bytes()
        assert b"data disk data1: blank, formatting" in console
        assert b"data disk data1 mounted on /data/data1" in console
        shell = AgentShell(domain)
        wait_for(shell.ping, 60, 0.5, what="guest agent answers")
        assert " /data/data1 ext4 " in shell.run("cat /proc/mounts")
        shell.run("echo before-freeze > /data/data1/file && sync")

        frozen = shell.agent("guest-fsfreeze-freeze")["return"]
        assert frozen >= 2, frozen  # /mnt (the containerDisk's filesystem) and /data/data1
        assert shell.agent("guest-fsfreeze-status")["return"] == "frozen"
        assert shell.agent("guest-fsfreeze-thaw")["return"] == frozen
        assert shell.agent("guest-fsfreeze-status")["return"] == "thawed"
        shell.run("echo 3 > /run/fsfreeze-hold")  # the next freeze waits 3 s in the hook (test facility)
        started = time.monotonic()
        assert shell.agent("guest-fsfreeze-freeze", timeout=30)["return"] == frozen
        assert time.monotonic() - started >= 3
        assert shell.agent("guest-fsfreeze-thaw")["return"] == frozen
        messages = shell.run("logread")
        assert "fsfreeze-hook: holding the freeze for 3 s" in messages
        freeze_at = messages.find("qemu-ga: fsfreeze-hook: freeze")
        assert freeze_at >= 0, messages
        assert "qemu-ga: fsfreeze-hook: thaw" in messages[freeze_at:], messages

        domain.destroy()  # cold restart: the data stays on the PVC, no second format
        log.write_bytes(b"")
        domain.create()
        wait_for(lambda: b"demo guest ready" in log.read_bytes(), BOOT_TIMEOUT, 0.5, what="second boot")
        console = log.read_bytes()
        assert b"formatting" not in console and b"data disk data1 mounted on /data/data1" in console
        wait_for(shell.ping, 60, 0.5, what="guest agent answers after the restart")
        assert shell.run("cat /data/data1/file") == "before-freeze\n"
    finally:
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        conn.close()
        cleanup(vmi, ctx)
