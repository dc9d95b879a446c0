"""kill -9 of the virt-handler process while a real QEMU (TCG) guest runs: the guest keeps
running untouched, the VMI goes Unknown while the node is silent (virt-controller), and is
Running again once a new handler adopts the domain. Then deleting the VMI shuts the guest down
by ACPI and leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from loop_helpers import VMIS, get_or_none, phase_of, wait_until
from polling import cancel_and_wait

from services.virt_handler.domain.configurators.identity import domain_name
from shared import events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
PROMPT = re.compile(rb"\[root@[\w.-]+ [^\]]*\]# ")
BANNER = b"kubevirt-py demo guest"
NAME = "demo"

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None
                                or os.geteuid() != 0, reason="needs root, QEMU and libvirtd (scripts/install.sh)")


@pytest.fixture
def node_dir(tmp_path):
    """A state dir QEMU (user libvirt-qemu) can traverse, removed afterwards (handler logs are
    kept in the test's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="kubevirt-py-handler-kill-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    for log in path.glob("*.log"):
        shutil.copy(log, tmp_path / log.name)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def system_libvirt(system_libvirtd):
    yield


def start_handler(nats_url, prefix, node, node_dir, log_name):
    return subprocess.Popen(
        [sys.executable, "-m", "services.virt_handler.main", "--nats", nats_url, "--bucket-prefix", prefix,
         "--node-name", node, "--libvirt-uri", "qemu:///system", "--state-dir", str(node_dir / "state"),
         "--image-dir", str(node_dir / "images"), "--heartbeat-interval", "1", "--log-level", "INFO",
         "--domain-type", "qemu"],  # TCG, and no KVM probe per start (KVM hangs on this machine)
        cwd=ROOT, stdout=open(node_dir / log_name, "w"), stderr=subprocess.STDOUT)


def unique_namespace():
    """A namespace of this run only: the guest's domain ``<namespace>_demo`` lives on the SYSTEM
    libvirtd, shared by every test run on the machine, so two runs must not pick the same name."""
    return f"kill-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def demo_vmi(node, namespace):
    from guest.demo_guest import DEMO_DISK_REF
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": NAME, "namespace": namespace,
                     "finalizers": ["kubevirt.io/foregroundDeleteVirtualMachine"]},
        "spec": {"domain": {"memory": {"guest": "256Mi"},
                            "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]}},
                 "terminationGracePeriodSeconds": 60,
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}}]},
        # placed as scheduler-bridge leaves it
        "status": {"phase": "Scheduled", "nodeName": node,
                   "phaseTransitionTimestamps": [{"phase": "Scheduled",
                                                  "phaseTransitionTimestamp": "2026-01-01T00:00:00.000000Z"}]},
    }


def qemu_pid(domain_name):
    pid_file = Path(f"/run/libvirt/qemu/{domain_name}.pid")
    return int(pid_file.read_text()) if pid_file.exists() else None


@needs_qemu
async def test_kill_9_of_the_handler_leaves_the_guest_running_and_it_is_adopted(
        object_store, nats_server, node_dir, system_libvirt):
    import libvirt

    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from services.virt_controller.manager import ControllerManager
    from shared.images import ImageStore

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = await asyncio.to_thread(apply_demo_guest_build, CACHE)
    await asyncio.to_thread(apply_demo_guest_import, ImageStore(node_dir / "images"), guest)
    node = f"kill-node-{os.getpid()}"
    ns = unique_namespace()
    dname = domain_name(ns, NAME)
    controller = ControllerManager(object_store, "kill-ctl", heartbeat_timeout=6.0, lease_duration=3.0,
                                   renew_deadline=2.0, retry_period=0.5)
    controller_task = asyncio.get_running_loop().create_task(controller.run())
    handler = start_handler(nats_server.url, object_store.prefix, node, node_dir, "handler-1.log")
    conn = libvirt.open("qemu:///system")
    try:
        await wait_until(lambda: _node_registered(object_store, node), timeout=30)
        await object_store.create(VMIS, demo_vmi(node, ns))
        vmi = await wait_until(lambda: _phase_is(object_store, ns, "Running"), timeout=60)
        uid = vmi["metadata"]["uid"]
        console = node_dir / "state" / "vmis" / uid / "console.log"
        await wait_until(lambda: console.exists() and PROMPT.search(console.read_bytes()), timeout=120)
        # Status from inside the guest, through its agent.
        vmi = await wait_until(lambda: _guest_reported(object_store, ns), timeout=90)
        assert vmi["status"]["guestOSInfo"]["id"] == "kubevirt-py-demo"
        assert vmi["status"]["guestOSInfo"]["kernelRelease"] == guest.kernel_version
        nic = vmi["status"]["interfaces"][0]
        assert (nic["name"], nic["infoSource"]) == ("default", "domain, guest-agent")
        reply = events.decode_command_result((await object_store.bus.request(
            events.handler_command_subject(node), events.encode(events.GuestOSInfo(namespace=ns, name=NAME)),
            timeout=30)).data)
        assert reply.ok and reply.body["os"]["id"] == "kubevirt-py-demo" and reply.body["hostname"]

        domain = conn.lookupByName(dname)
        pid_before, id_before = qemu_pid(dname), domain.ID()
        assert pid_before

        handler.send_signal(signal.SIGKILL)
        handler.wait(10)
        # The node falls silent: virt-controller marks the VMI Unknown; the guest runs on.
        await wait_until(lambda: _phase_is(object_store, ns, "Unknown"), timeout=30)
        assert domain.isActive() and qemu_pid(dname) == pid_before

        handler = start_handler(nats_server.url, object_store.prefix, node, node_dir, "handler-2.log")
        await wait_until(lambda: _phase_is(object_store, ns, "Running"), timeout=60)
        assert (qemu_pid(dname), conn.lookupByName(dname).ID()) == (pid_before, id_before)
        assert console.read_bytes().count(BANNER) == 1  # booted once: never restarted
        await wait_until(lambda: _guest_reported(object_store, ns), timeout=30)  # agent found connected again

        phases_seen = []

        async def follow_phases():
            async for event in object_store.watch(VMIS, ns, field_selector=f"metadata.name={NAME}"):
                phases_seen.append(phase_of(event.object))
                if event.type == "DELETED":
                    return

        follower = asyncio.get_running_loop().create_task(follow_phases())
        await object_store.delete(VMIS, ns, NAME)
        await asyncio.wait_for(follower, 90)  # the VMI is removed once final (controller finalizer)
        assert "Succeeded" in phases_seen and "Failed" not in phases_seen  # the guest honoured ACPI
        await wait_until(lambda: dname not in [d.name() for d in conn.listAllDomains()], timeout=30)
        await wait_until(lambda: not (node_dir / "state" / "vmis" / uid).exists(), timeout=30)
        await wait_until(lambda: _absent(object_store, ns), timeout=30)  # the controller dropped its finalizer
    finally:
        handler.send_signal(signal.SIGTERM)
        try:
            handler.wait(15)
        except subprocess.TimeoutExpired:
            handler.kill()
        try:
            leftover = conn.lookupByName(dname)
            if leftover.isActive():
                leftover.destroy()
            leftover.undefine()
        except libvirt.libvirtError:
            pass
        conn.close()
        await cancel_and_wait(controller_task)


async def _guest_reported(store, namespace):
    vmi = await get_or_none(store, VMIS, NAME, namespace)
    conditions = {c["type"]: c for c in (vmi or {}).get("status", {}).get("conditions") or []}
    if phase_of(vmi) == "Running" and conditions.get("AgentConnected", {}).get("status") == "True" \
            and (vmi["status"].get("guestOSInfo") or {}).get("id"):
        return vmi
    return None


async def _node_registered(store, node):
    return await get_or_none(store, "nodes", node, namespace=None)


async def _phase_is(store, namespace, phase):
    vmi = await get_or_none(store, VMIS, NAME, namespace)
    return vmi if phase_of(vmi) == phase else None


async def _absent(store, namespace):
    return await get_or_none(store, VMIS, NAME, namespace) is None
