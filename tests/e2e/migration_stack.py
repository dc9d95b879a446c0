"""A two-node embedded installation for the live-migration end-to-end tests (not a test module).

:func:`two_node_installation` runs ``virtctl up --nodes 2`` in a private state directory on free
ports (node 1: the installation's virt-handler on ``qemu:///system``; node 2: a virt-handler on a
private libvirtd with its own host UUID), imports the demo guest and yields a :class:`MigStack`;
``virtctl down --wipe`` at the end, which also checks that no domain of the test's namespace is
left on either daemon. :class:`MigStack` reaches the API (kubernetes client on the installation's
kubeconfig), each node's libvirt (``virsh``), each node's per-VMI files, and the installation's
processes (signal, ``kill -9`` and restart one the way ``virtctl up`` starts it). :class:`Console`
drives ``virtctl console`` on a pty as a terminal user does.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2e_helpers import (  # noqa: F401 (re-exported)
    ROOT,
    apply_keep_logs,
    needs_qemu,
    permission_violations,
    qemu_pids,
    virtctl,
    wait_for,
)
CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
BOOT_TIMEOUT = 180
VMIMS = "virtualmachineinstancemigrations"
VMIS = "virtualmachineinstances"

@dataclass(frozen=True)
class Node:
    """One node of the installation: its Node name, libvirt URI, virt-handler state dir and the
    name of its handler's process record (``run/<process>.json``)."""

    name: str
    uri: str
    handler_dir: Path
    process: str


class MigStack:
    """The installation under test (see the module docstring)."""

    def __init__(self, state: Path, namespace: str, vm: str = "vm-demo"):
        from kubernetes import client, config

        from services.virtctl.extra_nodes import load_extra_nodes
        from services.virtctl.installation import load_layout

        self.state, self.namespace, self.vm = state, namespace, vm
        self.layout = load_layout(state)
        self.kubeconfig = str(self.layout.kubeconfig)
        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self.api = client.CustomObjectsApi(api_client)
        self.domain = f"{namespace}_{vm}"
        _, extra = load_extra_nodes(self.layout)
        first = Node(self.layout.node_name, self.layout.libvirt_uri, self.layout.handler_dir, "virt-handler")
        self.nodes = {first.name: first}
        for node in extra:
            self.nodes[node.name] = Node(node.name, node.uri(self.layout), node.directory(self.layout) / "virt-handler",
                                         node.handler_spec(self.layout).name)

    # -- API ----------------------------------------------------------------------------------
    def get(self, plural: str, name: str | None = None, group: str = "kubevirt.io", version: str = "v1"):
        from kubernetes.client.exceptions import ApiException
        try:
            return self.api.get_namespaced_custom_object(group, version, self.namespace, plural, name or self.vm)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create(self, plural: str, body: dict) -> dict:
        return self.api.create_namespaced_custom_object("kubevirt.io", "v1", self.namespace, plural, body)

    def vmi(self) -> dict | None:
        return self.get(VMIS)

    def migrations(self) -> list[dict]:
        """This VM's VMIMs (label ``kubevirt.io/vmi-name``), oldest first."""
        items = self.api.list_namespaced_custom_object("kubevirt.io", "v1", self.namespace, VMIMS,
                                                       label_selector=f"kubevirt.io/vmi-name={self.vm}")["items"]
        return sorted(items, key=lambda i: (i["metadata"].get("creationTimestamp", ""), i["metadata"]["name"]))

    def create_migration(self, name: str) -> dict:
        return self.create(VMIMS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                                   "metadata": {"name": name}, "spec": {"vmiName": self.vm}})

    def apply_vm(self, manifest: dict) -> None:
        manifest = {**manifest, "metadata": {**manifest["metadata"], "name": self.vm}}
        self.create("virtualmachines", manifest)

    def set_migration_config(self, **fields) -> None:
        """Merge ``fields`` (None removes one) into the KubeVirt object's
        ``spec.configuration.migrations`` (``kubevirt/kubevirt``, created when missing)."""
        from kubernetes.client.exceptions import ApiException
        try:
            self.api.patch_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt",
                                                    {"spec": {"configuration": {"migrations": fields}}})
        except ApiException as err:
            if err.status != 404:
                raise
            body = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                    "spec": {"configuration": {"migrations": {k: v for k, v in fields.items() if v is not None}}}}
            self.api.create_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", body)

    def vctl(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """A client subcommand against this installation and namespace."""
        return virtctl(*args, "--kubeconfig", self.kubeconfig, "-n", self.namespace, check=check, timeout=timeout)

    # -- nodes --------------------------------------------------------------------------------
    def other(self, node: str) -> str:
        """The node that is not ``node`` (two-node installation)."""
        (name,) = [n for n in self.nodes if n != node]
        return name

    def domains(self, node: str, state: str = "--all") -> list[str]:
        """Names of this test's domains on ``node``'s libvirt (``state``: ``--all`` or ``--state-running``)."""
        out = subprocess.run(["virsh", "-c", self.nodes[node].uri, "list", state, "--name"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip().startswith(f"{self.namespace}_")]

    def domain_state(self, node: str) -> str | None:
        """``virsh domstate`` of the VM's domain on ``node`` (None when not defined there)."""
        out = subprocess.run(["virsh", "-c", self.nodes[node].uri, "domstate", self.domain], capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip() if out.returncode == 0 else None

    def vmi_dir(self, node: str, uid: str) -> Path:
        return self.nodes[node].handler_dir / "vmis" / uid

    def console_log(self, node: str, uid: str) -> Path:
        return self.vmi_dir(node, uid) / "console.log"

    def wait_running(self, timeout: float = BOOT_TIMEOUT) -> dict:
        """The Running VMI once its console log (on its node) shows ``demo guest ready``."""
        def running():
            vmi = self.vmi()
            return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None

        vmi = wait_for(running, timeout, 0.5, what="VMI Running")
        log = self.console_log(vmi["status"]["nodeName"], vmi["metadata"]["uid"])
        wait_for(lambda: log.exists() and b"demo guest ready" in log.read_bytes(), timeout, 0.5,
                 what=f"'demo guest ready' in {log}")
        return vmi

    def condition(self, vmi: dict | None, kind: str) -> str | None:
        for cond in ((vmi or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == kind:
                return cond.get("status")
        return None

    # -- processes ----------------------------------------------------------------------------
    def spec(self, process: str):
        """The ServiceSpec ``virtctl up`` starts ``process`` with (a service or a node's handler)."""
        from services.virtctl import installation as inst
        from services.virtctl.extra_nodes import load_extra_nodes

        specs = {s.name: s for s in inst.SERVICES}
        specs.update({n.handler_spec(self.layout).name: n.handler_spec(self.layout)
                      for n in load_extra_nodes(self.layout)[1]})
        return specs[process]

    def pid(self, process: str) -> int:
        from services.virtctl import installation as inst

        record = inst.read_record(self.layout, process)
        assert record is not None and inst.is_our_process(record), f"{process} is not running"
        return record.pid

    def signal(self, process: str, sig: int) -> None:
        os.kill(self.pid(process), sig)

    def kill9(self, process: str) -> None:
        from services.virtctl import installation as inst

        assert inst.stop(self.layout, self.spec(process), kill=True), f"{process} was not running"

    def restart(self, process: str) -> None:
        """Start ``process`` again as ``virtctl up`` does (launch, then wait until healthy)."""
        from services.virtctl import installation as inst

        spec = self.spec(process)
        inst.wait_healthy(self.layout, spec, inst.launch(self.layout, spec))

    def missing_processes(self) -> list[str]:
        """Processes ``virtctl up`` would start now (not running)."""
        from services.virtctl import installation as inst
        from services.virtctl.extra_nodes import compute_running_specs

        return [s.name for s in [*inst.SERVICES, *compute_running_specs(self.layout)]
                if inst.running_record(self.layout, s) is None]

    def resume_all(self) -> None:
        """SIGCONT every recorded process of the installation (after a test that stopped some)."""
        from services.virtctl import installation as inst

        for path in self.layout.run_dir.glob("*.json"):
            record = inst.read_record(self.layout, path.stem)
            if record is not None and inst.is_our_process(record):
                os.kill(record.pid, signal.SIGCONT)


class Console:
    """``virtctl console <vm>`` on a pty, as a terminal user runs it."""

    PROMPT = re.compile(rb"\[root@[\w.-]+ [^\]]*\]# ")

    def __init__(self, stack: MigStack):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.virtctl.main", "--kubeconfig", stack.kubeconfig, "-n", stack.namespace,
             "console", stack.vm], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True)
        os.close(slave)
        self.seen = b""
        self.expect(b"The escape sequence is ^]")

    def expect(self, pattern: bytes | re.Pattern, timeout: float = 30) -> re.Match:
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while time.monotonic() < deadline:
            match = regex.search(self.seen, start)
            if match:
                return match
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} not seen on the console within {timeout} s; got: {self.seen[-600:]!r}")

    def run(self, command: str, answer: bytes, timeout: float = 30) -> re.Match:
        """Type ``command`` and wait for the regex ``answer`` in what follows."""
        os.write(self.master, (command + "\r").encode())
        return self.expect(re.compile(answer), timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                os.write(self.master, b"\x1d")  # Ctrl-]
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        os.close(self.master)
        return self.proc.returncode


@dataclass(frozen=True)
class ShellFacts:
    """What the guest's console shell says: its pid, a variable set in it, the guest's uptime (s)."""

    shell_pid: int
    token: str
    uptime: float


def read_shell(stack: MigStack, set_token: str | None = None) -> ShellFacts:
    """Open ``virtctl console``, optionally ``export MIGTOKEN=<set_token>`` in the shell, then read
    ``$$``, ``$MIGTOKEN`` and ``/proc/uptime``; closes the console with Ctrl-]."""
    console = Console(stack)
    try:
        if set_token is not None:
            console.run(f"export MIGTOKEN={set_token}", rb"\]# ")
        mark = secrets.token_hex(3)
        match = console.run(f"echo {mark} $$ :$MIGTOKEN: $(cut -d' ' -f1 /proc/uptime)",
                            rb"\r\n" + mark.encode() + rb" (\d+) :(\w*): (\d+\.\d+)")
        assert console.close() == 0
        return ShellFacts(int(match.group(1)), match.group(2).decode(), float(match.group(3)))
    finally:
        if console.proc.poll() is None:
            console.close()


def demo_vm_manifest(user_data: str | None = None) -> dict:
    """examples/vm-demo.yaml with its pod interface bound by ``masquerade`` (migratable; the
    default binding, ``bridge``, is refused with ``InterfaceNotLiveMigratable`` as in KubeVirt),
    optionally with other cloud-init user data."""
    manifest = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
    spec = manifest["spec"]["template"]["spec"]
    if not spec["domain"]["devices"].get("interfaces"):
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}}]
        spec["networks"] = [{"name": "default", "pod": {}}]
    if user_data is not None:
        for volume in manifest["spec"]["template"]["spec"]["volumes"]:
            if "cloudInitNoCloud" in volume:
                volume["cloudInitNoCloud"] = {"userData": user_data}
    return manifest


@contextlib.contextmanager
def two_node_installation(prefix: str) -> Iterator[MigStack]:
    """``virtctl up --nodes 2`` with the demo guest imported (see the module docstring)."""
    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from services.virtctl.installation import load_layout
    from shared.images import ImageStore
    from shared.natsserver import pick_free_port

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    state = Path(tempfile.mkdtemp(prefix=f"kubevirt-py-{prefix}-", dir="/var/tmp"))
    state.chmod(0o755)
    namespace = f"{prefix}-{secrets.token_hex(3)}"
    stack = None
    try:
        port = pick_free_port()
        virtctl("up", "--state-dir", str(state), "--api-port", str(port), "--node-name", f"m{port}", "--nodes", "2")
        apply_demo_guest_import(ImageStore(load_layout(state).images_dir), guest)
        stack = MigStack(state, namespace)
        yield stack
    finally:
        if stack is not None:
            stack.resume_all()
        apply_keep_logs(state)
        violations = permission_violations(state)
        down = virtctl("down", "--state-dir", str(state), "--wipe", check=False)
        leftovers: list = []
        if stack is not None:
            leftovers = [(n, d) for n in stack.nodes for d in _safe_domains(stack, n)]
            leftovers += [("qemu", p) for p in qemu_pids(stack.domain)]
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not leftovers, f"domains left after virtctl down: {leftovers}"
        assert not violations, "NATS permissions violations:\n" + "\n".join(violations)


def _safe_domains(stack: MigStack, node: str) -> list[str]:
    try:
        return stack.domains(node)
    except (subprocess.SubprocessError, OSError):
        return []  # the node's daemon is gone with its domains
