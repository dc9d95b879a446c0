"""A one-node embedded installation for the snapshot and restore end-to-end tests (not a test module).

:func:`one_node_installation` runs ``virtctl up`` (virt-api, virt-controller, scheduler-bridge,
virt-migration, virt-snapshot, virt-handler on ``qemu:///system``) in a private state directory on
free ports, imports the demo guest and yields a :class:`SnapStack`; ``virtctl down --wipe`` at the
end, which also checks that no domain of the test's namespace is left. :class:`SnapStack` adds to
:class:`tests.e2e.migration_stack.MigStack` (API, processes, per-VMI files) the
``snapshot.kubevirt.io/v1beta1`` kinds, PersistentVolumeClaims, Events, the files of claims and
volume copies, and the guest's side through ``virtctl console``: the data disk's file and the
guest agent's fsfreeze log (``guest/fsfreeze-hook.sh``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import yaml

from tests.e2e.e2e_helpers import ROOT, apply_keep_logs, permission_violations, qemu_pids, virtctl, wait_for
from tests.e2e.migration_stack import BOOT_TIMEOUT, CACHE, VMIS, Console, MigStack

GROUP, VERSION = "snapshot.kubevirt.io", "v1beta1"
SNAPSHOTS, CONTENTS, RESTORES = "virtualmachinesnapshots", "virtualmachinesnapshotcontents", "virtualmachinerestores"
DATA_DIR = "/data/data1"  # where the demo guest mounts the disk whose serial is data1
DATA_FILE = f"{DATA_DIR}/file"


def data_vm_manifest(name: str, claim: str) -> dict:
    """examples/vm-demo.yaml named ``name`` with a data disk ``data`` (virtio, serial ``data1``)
    on PersistentVolumeClaim ``claim``."""
    vm = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
    vm["metadata"] = {"name": name, "labels": {"app": name}}
    spec = vm["spec"]["template"]["spec"]
    vm["spec"]["template"]["metadata"]["labels"] = {"kubevirt.io/vm": name}
    spec["domain"]["devices"]["disks"].append({"name": "data", "serial": "data1", "disk": {"bus": "virtio"}})
    spec["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
    return vm


def condition(obj: dict | None, kind: str) -> dict | None:
    """The condition of type ``kind`` in ``obj.status.conditions`` (None when absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


class SnapStack(MigStack):
    """The installation under test (see the module docstring); ``vm`` is the main VM's name."""

    def __init__(self, state: Path, namespace: str, vm: str):
        from kubernetes import client, config

        super().__init__(state, namespace, vm)
        self.api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self.core = client.CoreV1Api(self.api_client)

    # -- snapshot.kubevirt.io ---------------------------------------------------------------------
    def sget(self, plural: str, name: str) -> dict | None:
        return self.get(plural, name, group=GROUP, version=VERSION)

    def screate(self, plural: str, body: dict) -> dict:
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def sdelete(self, plural: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def create_snapshot(self, name: str, vm: str | None = None, **spec: str) -> dict:
        """A VirtualMachineSnapshot of ``vm`` (default: the main VM); ``spec``: e.g.
        ``deletionPolicy="Retain"``, ``failureDeadline="20s"``."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualMachineSnapshot", "metadata": {"name": name},
                "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm or self.vm},
                         **spec}}
        return self.screate(SNAPSHOTS, body)

    def create_restore(self, name: str, snapshot: str, target: str | None = None, **spec: str) -> dict:
        """A VirtualMachineRestore of ``snapshot`` onto ``target`` (default: the main VM)."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualMachineRestore", "metadata": {"name": name},
                "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target or self.vm},
                         "virtualMachineSnapshotName": snapshot, **spec}}
        return self.screate(RESTORES, body)

    def wait_snapshot_ready(self, name: str, timeout: float = 240) -> dict:
        def ready():
            snap = self.sget(SNAPSHOTS, name)
            status = (snap or {}).get("status") or {}
            assert status.get("phase") != "Failed", f"snapshot {name} failed: {status}"
            return snap if status.get("readyToUse") is True else None

        with self.explained((SNAPSHOTS, name)):
            return wait_for(ready, timeout, 0.5, what=f"snapshot {name} readyToUse")

    def wait_restore_complete(self, name: str, timeout: float = 240) -> dict:
        def complete():
            restore = self.sget(RESTORES, name)
            return restore if ((restore or {}).get("status") or {}).get("complete") is True else None

        with self.explained((RESTORES, name)):
            return wait_for(complete, timeout, 0.5, what=f"restore {name} complete")

    # -- core v1 ----------------------------------------------------------------------------------
    def create_claim(self, name: str, size: str) -> None:
        self.core.create_namespaced_persistent_volume_claim(self.namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})

    def claim(self, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException
        try:
            return self.api_client.sanitize_for_serialization(
                self.core.read_namespaced_persistent_volume_claim(name, self.namespace))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def wait_claim_bound(self, name: str, timeout: float = 120) -> dict:
        return wait_for(lambda: (c := self.claim(name)) and (c.get("status") or {}).get("phase") == "Bound" and c,
                        timeout, 0.5, what=f"claim {name} Bound")

    def event_reasons(self, kind: str, name: str) -> list[str]:
        """Reasons of the namespace's Events about object ``kind``/``name``, oldest first."""
        items = self.core.list_namespaced_event(self.namespace).items
        return [e.reason for e in items if e.involved_object.kind == kind and e.involved_object.name == name]

    # -- diagnostics ------------------------------------------------------------------------------
    def log_tail(self, process: str, lines: int = 25) -> str:
        """The last ``lines`` lines of ``process``'s log (health checks and access lines left out)."""
        out = []
        for path in sorted(self.layout.logs_dir.glob(f"{process}*.log")):
            out += [line for line in path.read_text(errors="replace").splitlines()
                    if "/healthz" not in line and "aiohttp.access" not in line]
        return "\n".join(out[-lines:])

    @contextlib.contextmanager
    def explained(self, *objects: tuple[str, str]) -> Iterator[None]:
        """On an AssertionError inside, add the status of each ``(plural, name)`` snapshot-group object
        and the tails of virt-snapshot's and virt-handler's logs to its message."""
        try:
            yield
        except AssertionError as err:
            details = [f"{plural}/{name}: {((self.sget(plural, name) or {}).get('status'))}" for plural, name in objects]
            details += [f"--- {p} log ---\n{self.log_tail(p)}" for p in ("virt-snapshot", "virt-handler")]
            raise AssertionError(f"{err}\n" + "\n".join(details)) from err

    # -- files ------------------------------------------------------------------------------------
    def copy_path(self, volume_snapshot_name: str) -> Path:
        """The embedded VolumeSnapshotter's copy of one volume (complete files only)."""
        return self.state / "volume-snapshots" / self.namespace / f"{volume_snapshot_name}.qcow2"

    def partial_copies(self) -> list[Path]:
        return sorted((self.state / "volume-snapshots").rglob("*.part"))

    def claim_disk(self, claim: str) -> Path:
        return self.state / "pvcs" / self.namespace / claim / "disk.img"

    # -- VMs and guests ---------------------------------------------------------------------------
    def vm_object(self, name: str | None = None) -> dict | None:
        return self.get("virtualmachines", name or self.vm)

    def vmi_of(self, name: str | None = None) -> dict | None:
        return self.get(VMIS, name or self.vm)

    def wait_vm_running(self, name: str | None = None, timeout: float = BOOT_TIMEOUT) -> dict:
        """The Running VMI of VM ``name`` once its guest printed ``demo guest ready`` and its agent
        is connected (``AgentConnected=True``)."""
        name = name or self.vm

        def running():
            vmi = self.vmi_of(name)
            return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None

        vmi = wait_for(running, timeout, 0.5, what=f"VMI {name} Running")
        log = self.console_log(vmi["status"]["nodeName"], vmi["metadata"]["uid"])
        wait_for(lambda: log.exists() and b"demo guest ready" in log.read_bytes(), timeout, 0.5,
                 what=f"'demo guest ready' in {log}")
        return wait_for(lambda: (v := self.vmi_of(name)) and (condition(v, "AgentConnected") or {}).get("status")
                        == "True" and v, timeout, 0.5, what=f"AgentConnected=True on {name}")

    def stop_vm(self, name: str | None = None, timeout: float = 120) -> None:
        """``virtctl stop`` and wait until the VMI is gone."""
        name = name or self.vm
        self.vctl("stop", name)
        wait_for(lambda: self.vmi_of(name) is None, timeout, 0.5, what=f"VMI {name} gone")
        wait_for(lambda: not qemu_pids(f"{self.namespace}_{name}"), 60, 0.5, what=f"no QEMU of {name}")

    def start_vm(self, name: str | None = None) -> dict:
        """``virtctl start`` and :meth:`wait_vm_running`."""
        self.vctl("start", name or self.vm)
        return self.wait_vm_running(name)

    def guest(self, name: str | None = None) -> GuestConsole:
        return GuestConsole(self, name or self.vm)


class GuestConsole:
    """Shell command lines in VM ``vm``'s guest through ``virtctl console`` (one console per call,
    closed with Ctrl-] afterwards, as a user does)."""

    def __init__(self, stack: SnapStack, vm: str):
        self.stack, self.vm = stack, vm

    def run(self, line: str, timeout: float = 30) -> str:
        """Output of ``line`` (a shell command line; its output on one line), read between two markers."""
        mark = secrets.token_hex(3)
        console = Console(SimpleNamespace(kubeconfig=self.stack.kubeconfig, namespace=self.stack.namespace,
                                          vm=self.vm))
        try:
            os.write(console.master, b"\r")
            console.expect(Console.PROMPT)
            match = console.run(f"echo {mark}-$( {line} | tr '\\n' '|' )-{mark}",
                                rb"\r\n" + mark.encode() + rb"-([^$]*?)-" + mark.encode(), timeout)
            return match.group(1).decode(errors="replace").replace("|", "\n")
        finally:
            console.close()

    def write_data(self, text: str) -> None:
        """Write ``text`` (one word) to the data disk's file and flush it to the disk."""
        assert self.run(f"echo {text} > {DATA_FILE} && sync && cat {DATA_FILE}") == f"{text}\n"

    def read_data(self) -> str:
        """The data disk's file's content without its newline."""
        return self.run(f"cat {DATA_FILE}").rstrip("\n")

    def freeze_log(self) -> list[str]:
        """The guest agent's fsfreeze hook lines in the guest's syslog (``freeze``/``thaw``...)."""
        return re.findall(r"fsfreeze-hook: (\w+)", self.run("logread | grep fsfreeze-hook"))


@contextlib.contextmanager
def one_node_installation(prefix: str, vm: str) -> Iterator[SnapStack]:
    """``virtctl up`` with the demo guest imported (see the module docstring)."""
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
        virtctl("up", "--state-dir", str(state), "--api-port", str(port), "--node-name", f"s{port}")
        apply_demo_guest_import(ImageStore(load_layout(state).images_dir), guest)
        stack = SnapStack(state, namespace, vm)
        yield stack
    finally:
        if stack is not None:
            stack.resume_all()
        apply_keep_logs(state)
        violations = permission_violations(state)
        down = virtctl("down", "--state-dir", str(state), "--wipe", check=False)
        domains = _domains(namespace)
        leftovers = [(d, p) for d in domains for p in qemu_pids(d)]
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not domains and not leftovers, f"left after virtctl down: {domains} {leftovers}"
        assert not violations, "NATS permissions violations:\n" + "\n".join(violations)


def _domains(namespace: str) -> list[str]:
    import subprocess
    try:
        out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                             text=True, timeout=30).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [d.strip() for d in out.splitlines() if d.strip().startswith(f"{namespace}_")]

