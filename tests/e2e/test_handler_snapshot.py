"""Freeze, thaw, the unfreeze timeout and a push-mode backup of a real QEMU (TCG) demo guest,
through virt-handler's commands on the bus (an in-process ``VmiAgent`` on ``qemu:///system``).

The guest has a containerDisk (its ext4 filesystem is mounted on /mnt: what fsfreeze acts on) and
a PVC whose ``disk.img`` is qcow2, as the local provisioner makes it. Checked: ``Freeze`` makes
``status.fsFreezeStatus: frozen`` and the guest agent's ``guest-fsfreeze-status`` says frozen;
``Unfreeze`` thaws; a freeze with a 5 s unfreeze timeout is thawed after ~5 s without
``Unfreeze``; ``BackupVolumes`` of the running guest's claim disk makes a qcow2 copy that
``qemu-img compare`` finds equal to the source read while the guest is paused; a handler that
goes away while the guest is frozen (timer lost, as after kill -9) is followed by one that
thaws the guest at the recorded deadline."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
pytest.importorskip("libvirt")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "handler"))
from polling import wait_until  # noqa: E402

from shared import events  # noqa: E402

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
VMIS = "virtualmachineinstances"
NS = f"snap{uuid.uuid4().hex[:6]}"
DOMAIN = f"{NS}_demo"
NODE = f"snapnode-{uuid.uuid4().hex[:6]}"

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None
                                or os.geteuid() != 0, reason="needs root, QEMU and libvirtd (scripts/install.sh)")


@pytest.fixture
def work_dir():
    path = Path(tempfile.mkdtemp(prefix="kvpy-snap-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def demo_vmi():
    from guest.demo_guest import DEMO_DISK_REF
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"domain": {"memory": {"guest": "256Mi"},
                            "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                                  {"name": "data", "disk": {"bus": "virtio"}}]}},
                 "terminationGracePeriodSeconds": 30,
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}},
                             {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        "status": {"phase": "Scheduled", "nodeName": NODE,
                   "phaseTransitionTimestamps": [{"phase": "Scheduled",
                                                  "phaseTransitionTimestamp": "2026-01-01T00:00:00.000000Z"}]},
    }


async def command(store, message):
    reply = await store.bus.request(events.handler_command_subject(NODE), events.encode(message), timeout=60)
    return events.decode_command_result(reply.data)


async def vmi_status(store):
    from shared.errors import NotFound
    try:
        return (await store.get(VMIS, NS, "demo")).get("status") or {}
    except NotFound:
        return {}


async def agent_connected(store):
    status = await vmi_status(store)
    return status.get("phase") == "Running" and any(
        c["type"] == "AgentConnected" and c["status"] == "True" for c in status.get("conditions") or [])


async def guest_freeze_status(hv):
    return await hv.agent_command(DOMAIN, "guest-fsfreeze-status")


@needs_qemu
async def test_freeze_thaw_timeout_and_backup_of_a_real_guest(object_store, system_libvirtd, work_dir):
    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from services.virt_handler import kvm_probe
    from services.virt_handler.agent import AgentConfig, VmiAgent
    from services.virt_handler.hypervisor import Hypervisor
    from shared.images import ImageStore

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    images = ImageStore(work_dir / "images")
    apply_demo_guest_import(images, guest)
    claim = work_dir / "pvcs" / NS / "data" / "disk.img"
    claim.parent.mkdir(parents=True)
    shutil.copyfile(guest.disk, claim)  # a qcow2 ext4 disk, as the local provisioner's claims are qcow2
    for d in (work_dir / "pvcs", work_dir / "pvcs" / NS, claim.parent):
        d.chmod(0o755)

    hv = Hypervisor("qemu:///system", call_timeout=60)
    await hv.open()
    agent = VmiAgent(object_store, hv, AgentConfig(
        node_name=NODE, state_dir=work_dir / "state", domain_type=kvm_probe.compute_domain_type(), images=images,
        pvc_root=work_dir / "pvcs", resync_interval=5.0), bus=object_store.bus)
    (work_dir / "state").mkdir(mode=0o755)
    await agent.start()
    try:
        await object_store.create(VMIS, demo_vmi())
        await wait_until(lambda: agent_connected(object_store), timeout=180, interval=0.5)
        from services.virt_handler.backup_plan import parse_domain_disks
        data_disk = parse_domain_disks(await hv.get_domain_xml(DOMAIN))["data"]
        assert (data_disk.path, data_disk.format) == (str(claim), "qcow2")

        # Freeze and Unfreeze
        frozen = await command(object_store, events.Freeze(namespace=NS, name="demo", unfreeze_timeout_seconds=60))
        assert (frozen.code, frozen.message) == (200, "")
        assert await guest_freeze_status(hv) == "frozen"
        await wait_until(lambda: _fs_freeze_status_is(object_store, "frozen"), timeout=20)
        thawed = await command(object_store, events.Unfreeze(namespace=NS, name="demo"))
        assert (thawed.code, thawed.message) == (200, "")
        assert await guest_freeze_status(hv) == "thawed"
        await wait_until(lambda: _fs_freeze_status_is(object_store, None), timeout=20)

        # the unfreeze timeout thaws without Unfreeze
        started = time.monotonic()
        assert (await command(object_store, events.Freeze(namespace=NS, name="demo",
                                                          unfreeze_timeout_seconds=5))).ok
        assert await guest_freeze_status(hv) == "frozen"
        await wait_until(lambda: _guest_thawed(hv), timeout=30, interval=0.25)
        elapsed = time.monotonic() - started
        assert 4.5 <= elapsed <= 12, f"thawed after {elapsed:.1f} s"
        print(f"unfreeze timeout 5 s: guest thawed after {elapsed:.2f} s")
        await wait_until(lambda: _fs_freeze_status_is(object_store, None), timeout=20)

        # a push-mode backup of the running guest's claim disk
        target = work_dir / "volume-snapshots" / NS / "copy-data.qcow2"
        volumes = [events.VolumeCopy(volume_name="data", target_path=str(target))]
        begun = await command(object_store, events.BackupVolumes(namespace=NS, name="demo", backup_id="e2e-1",
                                                                 volumes=volumes))
        assert begun.ok, begun
        status = events.BackupStatus(namespace=NS, name="demo", backup_id="e2e-1", volumes=volumes)
        body = await wait_until(lambda: _backup_done(object_store, status), timeout=120, interval=0.25)
        assert body["phase"] == "Completed", body
        assert agent.backups.jobs["e2e-1"].stand_in is False  # libvirt's push backup, not the stand-in
        assert body["totalBytes"] > 0 and body["processedBytes"] == body["totalBytes"]
        assert target.is_file() and not Path(f"{target}.part").exists()
        info = subprocess.run(["qemu-img", "info", "--output=json", str(target)], capture_output=True, text=True,
                              check=True).stdout
        assert '"format": "qcow2"' in info
        await hv.pause(DOMAIN)
        compared = subprocess.run(["qemu-img", "compare", "-U", str(claim), str(target)], capture_output=True,
                                  text=True)
        assert compared.returncode == 0, compared.stdout + compared.stderr
        await hv.resume(DOMAIN)
        again = await command(object_store, events.BackupVolumes(namespace=NS, name="demo", backup_id="e2e-1",
                                                                 volumes=volumes))
        assert again.ok and again.body["creationTime"] == begun.body["creationTime"]

        # the handler goes away while the guest is frozen (its timer with it, as after kill -9); the
        # next handler thaws the guest at the recorded deadline
        started = time.monotonic()
        assert (await command(object_store, events.Freeze(namespace=NS, name="demo",
                                                          unfreeze_timeout_seconds=6))).ok
        await agent.stop()
        await asyncio.sleep(1)
        assert await guest_freeze_status(hv) == "frozen"
        agent = VmiAgent(object_store, hv, agent.config, bus=object_store.bus)
        await agent.start()
        await wait_until(lambda: _guest_thawed(hv), timeout=30, interval=0.25)
        elapsed = time.monotonic() - started
        assert 5.5 <= elapsed <= 13, f"thawed after {elapsed:.1f} s"
        print(f"handler restarted while frozen (timeout 6 s): guest thawed after {elapsed:.2f} s")
        await wait_until(lambda: _fs_freeze_status_is(object_store, None), timeout=20)
    finally:
        await agent.stop()
        try:
            await hv.destroy(DOMAIN)
        except Exception:  # noqa: BLE001 - already gone
            pass
        await hv.undefine(DOMAIN)
        await hv.close()


async def _fs_freeze_status_is(store, value):
    return (await vmi_status(store)).get("fsFreezeStatus") == value


async def _guest_thawed(hv):
    return await guest_freeze_status(hv) == "thawed"


async def _backup_done(store, status):
    reply = await command(store, status)
    assert reply.ok, reply
    return reply.body if reply.body["phase"] in ("Completed", "Failed") else None
