"""The whole installation with a real QEMU (TCG) guest, driven as a user drives it.

One ``virtctl up`` in a private state directory on free ports (nats-server, virt-api,
virt-controller, scheduler-bridge, virt-handler on qemu:///system) serves the module; the demo
guest (built once, cached under ``$KUBEVIRT_PY_TEST_CACHE``) is imported into its image store and
``examples/vm-demo.yaml`` is applied in a namespace of its own (domain ``<ns>_vm-demo``: nothing
here touches another installation's guests on the shared system libvirtd). The tests run in
order on the same VM:

1. the manifest boots to ``printableStatus: Running`` with the banner on the console;
2. ``virtctl console`` (driven through a pty) shows a live prompt and echoes a typed command;
   after a ``kill -9`` of virt-api and ``virtctl up`` it reconnects by itself and still works;
3. ``kill -9`` of virt-handler: the guest keeps running (same libvirt domain id, uptime keeps
   growing, one boot banner) and the VMI is Running again, same uid, after ``virtctl up``;
4. ``virtctl down`` stops every process ``up`` started and this installation's guest (nothing
   left), keeps the data, and the next ``up`` runs the VM again (runStrategy Always);
5. ``virtctl stop`` and then (after ``virtctl start``) ``DELETE`` of the VM leave no domain,
   no qemu process and no overlay or ISO. The fixture ends with ``virtctl down --wipe``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from e2e_helpers import ROOT, apply_keep_logs, needs_qemu, permission_violations, qemu_pids, virtctl, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
PROMPT = re.compile(rb"\[root@vm-demo [^\]]*\]# ")
BANNER = b"kubevirt-py demo guest"
BOOT_TIMEOUT = 150

def virsh_domains() -> list[str]:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def domain_id(domain: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", "domid", domain], capture_output=True, text=True,
                          timeout=30, check=True).stdout.strip()


class Stack:
    """The installation under test and handy accessors."""

    def __init__(self, state: Path, namespace: str):
        from kubernetes import client, config

        from services.virtctl.installation import load_layout

        self.state = state
        self.namespace = namespace
        self.layout = load_layout(state)
        self.kubeconfig = str(self.layout.kubeconfig)
        self.api = client.CustomObjectsApi(config.new_client_from_config(config_file=self.kubeconfig))
        self.domain = f"{namespace}_vm-demo"

    def get(self, plural: str):
        from kubernetes.client.exceptions import ApiException
        try:
            return self.api.get_namespaced_custom_object("kubevirt.io", "v1", self.namespace, plural, "vm-demo")
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def printable_status(self) -> str | None:
        return ((self.get("virtualmachines") or {}).get("status") or {}).get("printableStatus")

    def running_vmi(self) -> dict | None:
        vmi = self.get("virtualmachineinstances")
        return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None

    def console_log(self, vmi: dict) -> Path:
        return self.layout.handler_dir / "vmis" / vmi["metadata"]["uid"] / "console.log"

    def wait_booted(self, replacing: dict | None = None) -> dict:
        """The Running VMI (a new one when ``replacing`` is given) once its console log shows
        the shell prompt."""
        old_uid = (replacing or {}).get("metadata", {}).get("uid")

        def new_running_vmi():
            vmi = self.running_vmi()
            return vmi if vmi and vmi["metadata"]["uid"] != old_uid else None

        vmi = wait_for(new_running_vmi, 90, what="VMI Running")
        wait_for(lambda: self.printable_status() == "Running", 30, what="printableStatus Running")
        log = self.console_log(vmi)
        wait_for(lambda: log.exists() and PROMPT.search(log.read_bytes()), BOOT_TIMEOUT,
                 what=f"the shell prompt in {log}")
        return vmi

    def vctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A client subcommand with ``-n``/``--kubeconfig`` after it (the console below puts them
        before it: both places work, as in KubeVirt's virtctl)."""
        return virtctl(*args, "--kubeconfig", self.kubeconfig, "-n", self.namespace, check=check)


class Console:
    """``virtctl console`` on a pty, as a terminal user runs it."""

    def __init__(self, stack: Stack):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.virtctl.main", "--kubeconfig", stack.kubeconfig, "-n", stack.namespace,
             "console", "vm-demo"], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, pattern: bytes | re.Pattern, timeout: float = 30) -> bytes:
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while time.monotonic() < deadline:
            match = regex.search(self.seen, start)
            if match:
                return match.group(0)
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} not seen on the console within {timeout} s; got: {self.seen[-600:]!r}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send("\x1d")  # Ctrl-]
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        os.close(self.master)
        return self.proc.returncode


def run_in_console(console: Console, command: str, answer: re.Pattern, timeout: float = 30) -> bytes:
    console.send(command + "\r")
    return console.expect(answer, timeout)


@pytest.fixture(scope="module")
def stack(system_libvirtd):
    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from shared.images import ImageStore
    from shared.natsserver import pick_free_port

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    state = Path(tempfile.mkdtemp(prefix="kubevirt-py-stack-", dir="/var/tmp"))
    state.chmod(0o755)
    namespace = f"e2e-{secrets.token_hex(4)}"
    try:
        virtctl("up", "--state-dir", str(state), "--api-port", str(pick_free_port()))
        from services.virtctl.installation import load_layout
        apply_demo_guest_import(ImageStore(load_layout(state).images_dir), guest)
        yield Stack(state, namespace)
    finally:
        apply_keep_logs(state)
        violations = permission_violations(state)
        down = virtctl("down", "--state-dir", str(state), "--wipe", check=False)
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert f"{namespace}_vm-demo" not in virsh_domains()
        assert not violations, "NATS permissions violations:\n" + "\n".join(violations)


@needs_qemu
def test_1_manifest_boots_to_running_with_the_banner(stack: Stack):
    manifest = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
    stack.api.create_namespaced_custom_object("kubevirt.io", "v1", stack.namespace, "virtualmachines", manifest)
    vmi = stack.wait_booted()
    log = stack.console_log(vmi).read_bytes()
    assert BANNER in log
    assert b"hello from cloud-init on vm-demo" in log
    assert vmi["status"]["nodeName"] == stack.layout.node_name
    assert stack.domain in virsh_domains() and qemu_pids(stack.domain)
    # the VMI says how it is accelerated (TCG here: domain type qemu); virtctl guestosinfo reads
    # the guest agent through virt-api
    from services.virt_handler.acceleration import compute_acceleration
    domain_type = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", stack.domain], capture_output=True,
                                 text=True, check=True).stdout.split("type='", 1)[1].split("'", 1)[0]
    annotations = (stack.running_vmi() or {}).get("metadata", {}).get("annotations", {})
    assert annotations["kubevirt-py.io/acceleration"] == compute_acceleration(domain_type)
    wait_for(lambda: any(c["type"] == "AgentConnected" and c["status"] == "True"
                         for c in (stack.running_vmi() or {}).get("status", {}).get("conditions", [])),
             90, what="AgentConnected")
    info = json.loads(stack.vctl("guestosinfo", "vm-demo").stdout)
    assert info["kind"] == "VirtualMachineInstanceGuestAgentInfo"
    assert info["os"]["id"] == "kubevirt-py-demo" and info["hostname"]


@needs_qemu
def test_2_console_is_live_and_survives_a_virt_api_restart(stack: Stack):
    from services.virtctl import installation as inst

    stack.wait_booted()
    console = Console(stack)
    try:
        console.expect(b"The escape sequence is ^]")
        token = secrets.token_hex(4)
        console.send("\r")
        console.expect(PROMPT)
        run_in_console(console, f"echo hi-{token}-$((6*7))", re.compile(f"hi-{token}-42".encode()))

        # a second reader takes over; the first one is told why and ends
        second = Console(stack)
        try:
            second.expect(b"The escape sequence is ^]")
            run_in_console(second, "echo second-$((2+2))", re.compile(rb"second-4"))
            console.expect(b"replaced by a newer one", 15)
            assert console.proc.wait(10) == 0
        finally:
            assert second.close() == 0

        third = Console(stack)
        try:
            third.expect(b"The escape sequence is ^]")
            run_in_console(third, "echo before-restart", re.compile(rb"\r\nbefore-restart"))
            assert inst.stop(stack.layout, inst.VIRT_API, kill=True)
            virtctl("up", "--state-dir", str(stack.state))
            third.expect(b"reconnecting", 30)
            run_in_console(third, f"echo after-restart-{token}", re.compile(f"\r\nafter-restart-{token}".encode()),
                           timeout=45)
        finally:
            assert third.close() == 0
    finally:
        console.close()


def guest_uptime(stack: Stack) -> float:
    console = Console(stack)
    try:
        console.expect(b"The escape sequence is ^]")
        raw = run_in_console(console, "cat /proc/uptime", re.compile(rb"\r\n(\d+\.\d+) \d+\.\d+"))
        return float(raw.split()[0])
    finally:
        console.close()


@needs_qemu
def test_3_kill_9_of_virt_handler_leaves_the_guest_running(stack: Stack):
    from services.virtctl import installation as inst

    vmi = stack.wait_booted()
    before_id = domain_id(stack.domain)
    before_uptime = guest_uptime(stack)
    assert inst.stop(stack.layout, inst.VIRT_HANDLER, kill=True)
    time.sleep(2)
    assert domain_id(stack.domain) == before_id, "the guest was restarted while its handler was down"
    virtctl("up", "--state-dir", str(stack.state))
    wait_for(lambda: (stack.running_vmi() or {}).get("metadata", {}).get("uid") == vmi["metadata"]["uid"], 60,
             what="the same VMI Running again")
    assert stack.printable_status() == "Running"
    assert domain_id(stack.domain) == before_id
    assert guest_uptime(stack) > before_uptime
    assert stack.console_log(vmi).read_bytes().count(BANNER) == 1  # one boot


def assert_nothing_left(stack: Stack, vmi: dict) -> None:
    wait_for(lambda: stack.domain not in virsh_domains(), 60, what=f"domain {stack.domain} gone")
    wait_for(lambda: not qemu_pids(stack.domain), 30, what="no qemu process")
    vmi_dir = stack.layout.handler_dir / "vmis" / vmi["metadata"]["uid"]
    wait_for(lambda: not vmi_dir.exists(), 30, what=f"{vmi_dir} removed")
    assert not list((stack.layout.handler_dir / "vmis").glob("*/*.qcow2"))
    assert not list((stack.layout.handler_dir / "vmis").glob("*/*.iso"))


@needs_qemu
def test_4_down_stops_what_up_started_and_its_guests_then_up_brings_the_vm_back(stack: Stack):
    from services.virtctl import installation as inst

    vmi = stack.wait_booted()
    records = {s.name: inst.read_record(stack.layout, s.name) for s in inst.SERVICES}
    assert all(r is not None and inst.is_our_process(r) for r in records.values())
    out = virtctl("down", "--state-dir", str(stack.state)).stdout
    for spec in inst.SERVICES:
        assert f"{spec.name:<16} stopped" in out
    assert f"guest            {stack.domain} shut down" in out
    assert not any(inst.is_alive(r.pid) for r in records.values())
    assert_nothing_left(stack, vmi)
    assert (stack.state / "installation.json").exists()  # the data stays without --wipe

    virtctl("up", "--state-dir", str(stack.state))
    # the stored VMI still says Running until the handler finds its domain gone and fails it;
    # runStrategy Always then runs a new VMI, as KubeVirt does after a node reboot
    stack.wait_booted(replacing=vmi)


@needs_qemu
def test_5_stop_and_delete_leave_nothing_behind(stack: Stack):
    vmi = stack.wait_booted()
    assert "was scheduled to stop" in stack.vctl("stop", "vm-demo").stdout
    wait_for(lambda: stack.printable_status() == "Stopped", 90, what="printableStatus Stopped")
    wait_for(lambda: stack.get("virtualmachineinstances") is None, 60, what="the VMI removed")
    assert_nothing_left(stack, vmi)

    stack.vctl("start", "vm-demo")
    wait_for(lambda: stack.running_vmi(), 90, what="VMI Running after start")
    vmi = stack.running_vmi()
    # delete while the guest is still booting: the grace period ends in a destroy if ACPI is not heard yet
    stack.api.delete_namespaced_custom_object("kubevirt.io", "v1", stack.namespace, "virtualmachines", "vm-demo")
    wait_for(lambda: stack.get("virtualmachines") is None and stack.get("virtualmachineinstances") is None, 90,
             what="VM and VMI deleted")
    assert_nothing_left(stack, vmi)
