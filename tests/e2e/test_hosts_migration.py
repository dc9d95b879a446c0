"""Live migration between hosts of ``virtctl up --hosts 3`` with a real QEMU guest: the demo guest
runs on host2 (inside host2's network namespace, on host2's libvirtd), migrates to host3, and the
migration data crosses the hosts' bridge: the VMI's ``targetNodeAddress`` is host3's bridge
address, the guest's memory shows up as traffic into host3's veth, and afterwards the only QEMU
of the domain runs in host3's namespace, on host3's libvirt. ``down`` leaves no namespace,
link, QEMU or libvirtd behind."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from e2e_helpers import ROOT, needs_qemu, qemu_pids, virtctl, wait_for

pytestmark = [pytest.mark.e2e, needs_qemu, pytest.mark.timeout(900)]

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
BOOT_TIMEOUT = 240


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def veth_tx_bytes(name: str) -> int:
    """Bytes the bridge sent into a host through its veth end (``tx`` on the root side)."""
    return int(Path(f"/sys/class/net/{name}/statistics/tx_bytes").read_text())


def test_demo_guest_on_host2_migrates_to_host3_over_the_bridge():
    from kubernetes import client, config

    from guest.demo_guest import apply_demo_guest_build, apply_demo_guest_import
    from services.virtctl.hosts import handler_uri, load_hosts_record
    from services.virtctl.installation import load_layout
    from shared import netns
    from shared.images import ImageStore

    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    state = Path(tempfile.mkdtemp(prefix="kubevirt-py-hosts-", dir="/var/tmp"))
    state.chmod(0o755)  # QEMU (libvirt-qemu) traverses down to each VMI's files
    namespace = f"hosts-{secrets.token_hex(3)}"
    domain = f"{namespace}_vm-demo"
    record = None
    try:
        virtctl("up", "--state-dir", str(state), "--hosts", "3", timeout=300)
        layout = load_layout(state)
        record = load_hosts_record(layout)
        apply_demo_guest_import(ImageStore(layout.images_dir), guest)
        api_client = config.new_client_from_config(config_file=str(layout.kubeconfig))
        core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
        host = {h.name: h for h in record.plan.hosts}

        # only host2 takes new guests while the VM starts
        for name in ("host1", "host3"):
            core.patch_node(name, {"spec": {"unschedulable": True}}, _preload_content=False)
        manifest = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
        custom.create_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", manifest)

        def vmi():
            try:
                return custom.get_namespaced_custom_object("kubevirt.io", "v1", namespace,
                                                           "virtualmachineinstances", "vm-demo")
            except client.ApiException:
                return None

        def agent_connected():
            current = vmi()
            conditions = {c["type"]: c["status"] for c in ((current or {}).get("status") or {}).get("conditions") or []}
            return current if conditions.get("AgentConnected") == "True" else None

        running = wait_for(agent_connected, BOOT_TIMEOUT, interval=1, what="the demo guest's agent on host2")
        assert running["status"]["nodeName"] == "host2"
        (qemu,) = qemu_pids(domain)
        assert netns_inode(f"/proc/{qemu}/ns/net") == netns_inode(f"/run/netns/{host['host2'].netns}")

        core.patch_node("host3", {"spec": {"unschedulable": False}}, _preload_content=False)
        before = veth_tx_bytes(host["host3"].bridge_veth)
        migrate = virtctl("--kubeconfig", str(layout.kubeconfig), "-n", namespace, "migrate", "vm-demo",
                          "--addedNodeSelector", "kubernetes.io/hostname=host3", "--wait", timeout=300)
        assert "succeeded from host2 to host3" in migrate.stdout, migrate.stdout
        into_host3 = veth_tx_bytes(host["host3"].bridge_veth) - before

        migrated = vmi()
        migration = migrated["status"]["migrationState"]
        assert migrated["status"]["nodeName"] == "host3" and migration["completed"] and not migration.get("failed")
        assert migration["targetNodeAddress"] == str(host["host3"].address)
        assert into_host3 > 32 * 2**20, f"only {into_host3} bytes went into host3 over the bridge"
        (qemu,) = wait_for(lambda: len(qemu_pids(domain)) == 1 and qemu_pids(domain), 30, what="one QEMU")
        assert netns_inode(f"/proc/{qemu}/ns/net") == netns_inode(f"/run/netns/{host['host3'].netns}")
        on_host3 = subprocess.run(["virsh", "-c", handler_uri(layout, record, "host3"), "list", "--name"],
                                  capture_output=True, text=True, check=True).stdout.split()
        assert domain in on_host3

        def gone_from_host2() -> bool:
            # the target takes the VMI over once its guest resumes; the source's libvirt finishes the
            # job (confirm phase, UNDEFINE_SOURCE) a moment later
            listed = subprocess.run(["virsh", "-c", handler_uri(layout, record, "host2"), "list", "--all", "--name"],
                                    capture_output=True, text=True, check=True).stdout.split()
            return domain not in listed

        wait_for(gone_from_host2, 30, what="the source definition on host2 to go")
        api_client.close()
    finally:
        down = virtctl("down", "--state-dir", str(state), "--wipe", check=False, timeout=300)
        # kept when down failed: its records are what a second 'virtctl down' needs
        assert down.returncode == 0, f"{down.stdout}{down.stderr} (state kept in {state})"
        shutil.rmtree(state, ignore_errors=True)
        assert not qemu_pids(domain)
        if record is not None:
            assert not {h.netns for h in record.plan.hosts} & netns.list_netns()
            links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
            assert not [link["ifname"] for link in json.loads(links) if link["ifname"].startswith(f"kvpy{record.plan.key}")]
        assert not processes_mentioning(str(state))


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line names ``text`` (libvirtd's --pid-file, a service's state)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
