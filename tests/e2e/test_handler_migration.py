"""Real live migration of a booted demo guest (QEMU TCG) between two virt-handler processes: node A
on the system libvirtd, node B on a private node daemon (``shared.libvirtd.apply_node_daemons``,
own mount namespace and host UUID). The TEST plays virt-migration (hand-off fields on the VMI).

A -> B: the domain exists only on B afterwards, ``nodeName`` says B, the guest's uptime (read
through the serial console that B's handler serves over the bus) kept growing, it was not booted
again, and its guest agent is connected on B. B -> A with a small bandwidth, and kill -9 of B's
handler (the source) while the migration runs: afterwards exactly one running domain, and the
VMI's ``nodeName`` and migration state match where the guest runs."""

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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
libvirt = pytest.importorskip("libvirt")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "handler"))
from migration_helpers import hand_off, state_of  # noqa: E402

from polling import wait_until  # noqa: E402
from shared import console as proto  # noqa: E402
from shared import events, libvirtd  # noqa: E402

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
VMIS = "virtualmachineinstances"
PROMPT = re.compile(rb"\[root@[\w.-]+ [^\]]*\]# ")
BANNER = b"kubevirt-py demo guest"
UPTIME = re.compile(rb"UP-(\d+\.\d+) [\d.]+-END")

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None
                                or shutil.which("unshare") is None or os.geteuid() != 0,
                                reason="needs root, QEMU, libvirtd and unshare (scripts/install.sh)")


@pytest.fixture
def work_dir(tmp_path):
    path = Path(tempfile.mkdtemp(prefix="kvpy-mig-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    for log in path.glob("*.log"):
        shutil.copy(log, tmp_path / log.name)
    shutil.rmtree(path, ignore_errors=True)


def start_handler(nats_url, prefix, node, uri, work, log_name):
    state = work / node
    state.mkdir(exist_ok=True)
    state.chmod(0o755)
    return subprocess.Popen(
        [sys.executable, "-m", "services.virt_handler.main", "--nats", nats_url, "--bucket-prefix", prefix,
         "--node-name", node, "--libvirt-uri", uri, "--state-dir", str(state), "--image-dir", str(work / "images"),
         "--heartbeat-interval", "1", "--log-level", "INFO", "--domain-type", "qemu"],
        cwd=ROOT, stdout=open(work / log_name, "a"), stderr=subprocess.STDOUT)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def demo_vmi(node, namespace):
    from guest.demo_guest import DEMO_DISK_REF
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "demo", "namespace": namespace},
        "spec": {"domain": {"memory": {"guest": "256Mi"},
                            "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]}},
                 "terminationGracePeriodSeconds": 30,
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}}]},
        "status": {"phase": "Scheduled", "nodeName": node,
                   "phaseTransitionTimestamps": [{"phase": "Scheduled",
                                                  "phaseTransitionTimestamp": "2026-01-01T00:00:00.000000Z"}]},
    }


NS = f"mig{uuid.uuid4().hex[:6]}"  # a namespace (so a domain name) no other test on the system libvirtd uses
DOMAIN = f"{NS}_demo"


async def get(store, plural, name, namespace=NS):
    from shared.errors import NotFound
    try:
        return await store.get(plural, namespace, name)
    except NotFound:
        return None


async def uptime_through_console(store, node):
    """The guest's uptime (s), read through the serial console the node's handler serves (the
    same path virt-api's console subresource takes)."""
    session = uuid.uuid4().hex[:16]
    received = bytearray()
    out = await store.bus.subscribe(proto.session_subject(session, "out"))
    try:
        reply = events.decode_command_result((await store.bus.request(
            proto.console_open_subject(node), msgspec_encode(proto.ConsoleOpen(
                namespace=NS, name="demo", session=session)), timeout=10)).data)
        assert reply.ok, reply
        await store.bus.publish(proto.session_subject(session, "in"), b"\necho UP-$(cat /proc/uptime)-END\n")
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            try:
                msg = await out.next_msg(timeout=1)
            except Exception:  # noqa: BLE001 - nats TimeoutError: keep waiting
                continue
            received += msg.data
            found = UPTIME.search(bytes(received))
            if found:
                return float(found.group(1))
        raise AssertionError(f"no uptime on the console of {node}: {bytes(received)[-300:]!r}")
    finally:
        await store.bus.publish(proto.session_subject(session, "close"), b"test done")
        await out.unsubscribe()


def msgspec_encode(message):
    import msgspec
    return msgspec.json.encode(message)


def domains(uri):
    """Domain name -> active, of the libvirt at ``uri`` (a domain vanishing meanwhile is left out)."""
    conn = libvirt.open(uri)
    found = {}
    try:
        for dom in conn.listAllDomains():
            try:
                found[dom.name()] = bool(dom.isActive())
            except libvirt.libvirtError:
                pass
        return found
    finally:
        conn.close()


def _live_xml(uri):
    conn = libvirt.open(uri)
    try:
        return conn.lookupByName(DOMAIN).XMLDesc(0)
    finally:
        conn.close()


def agent_connected(vmi):
    return any(c["type"] == "AgentConnected" and c["status"] == "True"
               for c in (vmi or {}).get("status", {}).get("conditions") or [])


@needs_qemu
async def test_live_migration_to_a_node_daemon_and_back_with_kill_9_of_the_source(
        object_store, nats_server, work_dir, system_libvirtd):
    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from shared.images import ImageStore

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = await asyncio.to_thread(apply_demo_guest_build, CACHE)
    await asyncio.to_thread(apply_demo_guest_import, ImageStore(work_dir / "images"), guest)
    tag = uuid.uuid4().hex[:6]
    node_a, node_b = f"mig-a-{tag}", f"mig-b-{tag}"
    daemons = libvirtd.apply_node_daemons(work_dir / "nodeb", node_b, str(uuid.uuid4()))
    handler_a = start_handler(nats_server.url, object_store.prefix, node_a, "qemu:///system", work_dir, "a.log")
    handler_b = start_handler(nats_server.url, object_store.prefix, node_b, daemons.uri, work_dir, "b.log")
    try:
        for node in (node_a, node_b):
            await wait_until(lambda n=node: get(object_store, "nodes", n, None), timeout=60)
        node_obj = await get(object_store, "nodes", node_a, None)
        assert node_obj["metadata"]["annotations"]["kubevirt-py.io/libvirt-migration-uri"].startswith(
            "qemu+unix:///system?socket=/proc/")
        await object_store.create(VMIS, demo_vmi(node_a, NS))
        vmi = await wait_until(lambda: _phase(object_store, "Running"), timeout=120)
        uid = vmi["metadata"]["uid"]
        log_a = work_dir / node_a / "vmis" / uid / "console.log"
        await wait_until(lambda: log_a.exists() and PROMPT.search(log_a.read_bytes()), timeout=180)
        await wait_until(lambda: _agent(object_store), timeout=120)
        before = await uptime_through_console(object_store, node_a)

        # A -> B
        await hand_off(object_store, "demo", node_a, node_b, "mig-1",
                       {"completionTimeoutPerGiB": 150, "progressTimeout": 150, "allowAutoConverge": True}, NS)
        vmi = await wait_until(lambda: _node_is(object_store, node_b), timeout=180)
        ms = state_of(vmi)
        assert ms["completed"] is True and not ms.get("failed"), ms
        assert vmi["status"]["migrationMethod"] == "BlockMigration"
        assert ms["progress"]["downtimeMs"] >= 0 and ms["progress"]["dataProcessedBytes"] > 0
        assert domains(daemons.uri) == {DOMAIN: True}
        await wait_until(lambda: DOMAIN not in domains("qemu:///system"), timeout=30)  # (other tests' may run there)
        await wait_until(lambda: not (work_dir / node_a / "vmis" / uid).exists(), timeout=30)
        after = await uptime_through_console(object_store, node_b)
        assert after > before  # the same guest, still running
        log_b = work_dir / node_b / "vmis" / uid / "console.log"
        assert BANNER not in log_b.read_bytes()  # it never booted on B
        # the guest agent answers on B: through B's handler (guestosinfo), and B's libvirt sees it connected
        reply = events.decode_command_result((await object_store.bus.request(
            events.handler_command_subject(node_b), events.encode(events.GuestOSInfo(namespace=NS, name="demo")),
            timeout=30)).data)
        assert reply.ok and reply.body["os"]["id"] == "kubevirt-py-demo", reply
        await wait_until(lambda: "state='connected'" in _live_xml(daemons.uri), timeout=60)
        await wait_until(lambda: _agent(object_store), timeout=60)

        # B -> A, slowly, and kill -9 of the source handler (B) while it runs
        await hand_off(object_store, "demo", node_b, node_a, "mig-2",
                       {"bandwidthPerMigration": "4Mi", "completionTimeoutPerGiB": 150, "progressTimeout": 150}, NS)
        await wait_until(lambda: _progress(object_store), timeout=120)
        handler_b.send_signal(signal.SIGKILL)
        handler_b.wait(10)
        handler_b = start_handler(nats_server.url, object_store.prefix, node_b, daemons.uri, work_dir, "b.log")
        vmi = await wait_until(lambda: _ended(object_store), timeout=240)
        ms = state_of(vmi)
        where = node_a if not ms.get("failed") else node_b
        vmi = await wait_until(lambda: _node_is(object_store, where), timeout=60)
        uris = {node_a: "qemu:///system", node_b: daemons.uri}
        other = ({node_a, node_b} - {where}).pop()
        await wait_until(lambda: DOMAIN not in domains(uris[other]), timeout=30)  # the source's is gone
        assert domains(uris[where]).get(DOMAIN) is True, ms  # exactly one running domain, where nodeName says
        await wait_until(lambda: not (work_dir / other / "vmis" / uid).exists(), timeout=30)
        assert vmi["status"]["phase"] == "Running"
        assert await uptime_through_console(object_store, where) > after
    finally:
        stop(handler_a)
        stop(handler_b)
        for uri in ("qemu:///system", daemons.uri):
            try:
                conn = libvirt.open(uri)
                try:
                    dom = conn.lookupByName(DOMAIN)
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                except libvirt.libvirtError:
                    pass
                conn.close()
            except libvirt.libvirtError:
                pass
        libvirtd.apply_stop_node(daemons)


async def _phase(store, phase):
    vmi = await get(store, VMIS, "demo")
    return vmi if (vmi or {}).get("status", {}).get("phase") == phase else None


async def _agent(store):
    vmi = await get(store, VMIS, "demo")
    return vmi if agent_connected(vmi) else None


async def _node_is(store, node):
    vmi = await get(store, VMIS, "demo")
    return vmi if (vmi or {}).get("status", {}).get("nodeName") == node else None


async def _progress(store):
    vmi = await get(store, VMIS, "demo")
    return vmi if (state_of(vmi).get("progress") or {}).get("dataProcessedBytes") else None


async def _ended(store):
    vmi = await get(store, VMIS, "demo")
    return vmi if state_of(vmi).get("completed") else None


