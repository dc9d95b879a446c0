"""``virtctl up --nodes 2``: a second virt-handler on its own libvirtd (own host UUID) registers as a
second Ready Node; ``down`` stops that handler and that libvirtd and nothing else. Real processes:
nats-server, every service, a private libvirtd from shared.libvirtd; node 1 on the test driver."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from services.virtctl.extra_nodes import ExtraNode
from services.virtctl.installation import load_layout
from shared.natsserver import pick_free_port

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[3]


def virtctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "services.virtctl.main", *args], capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"virtctl {' '.join(args)}: {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def libvirtd_cmdlines() -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "libvirtd":
            found[int(proc.name)] = b" ".join(argv).decode(errors="replace")
    return found


def host_uuid(uri: str) -> str:
    conn = libvirt.open(uri)
    try:
        return ET.fromstring(conn.getCapabilities()).findtext("./host/uuid")
    finally:
        conn.close()


def extra_uri(state: Path, name: str) -> str:
    return ExtraNode(name, "", 0).uri(load_layout(state))


@pytest.fixture
def state(tmp_path: Path, system_libvirtd):
    directory = tmp_path / "state"
    yield directory
    if (directory / "installation.json").exists():
        virtctl("down", "--state-dir", str(directory), check=False)


def test_up_with_two_nodes_registers_two_ready_nodes_and_down_stops_the_second_libvirtd(state: Path):
    node1 = f"n{pick_free_port()}"
    up = virtctl("up", "--state-dir", str(state), "--api-port", str(pick_free_port()),
                 "--libvirt-uri", "test:///default", "--node-name", node1, "--nodes", "2")
    node2 = f"{node1}-node2"
    assert re.search(rf"virt-handler-{node2} started \(pid \d+, libvirtd pid \d+, host UUID ", up.stdout), up.stdout

    record = json.loads((state / "nodes" / "nodes.json").read_text())
    assert record["count"] == 2 and [n["name"] for n in record["nodes"]] == [node2]
    base = state / "nodes" / node2 / "libvirt"
    daemon_pid = int((base / "libvirtd.pid").read_text())
    ours = {pid: line for pid, line in libvirtd_cmdlines().items() if str(base) in line}
    assert list(ours) == [daemon_pid]
    uri = extra_uri(state, node2)
    assert host_uuid(uri) == record["nodes"][0]["host_uuid"] != host_uuid("qemu:///system")

    nodes = json.loads(subprocess.run(
        ["kubectl", "--kubeconfig", str(state / "kubeconfig"), "get", "nodes", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=30).stdout)["items"]
    ready = {n["metadata"]["name"]: {c["type"]: c["status"] for c in n["status"]["conditions"]}.get("Ready")
             for n in nodes}
    assert ready == {node1: "True", node2: "True"}

    status = virtctl("status", "--state-dir", str(state)).stdout
    assert re.search(rf"virt-handler-{node2} running \(pid \d+\), healthy", status), status
    again = virtctl("up", "--state-dir", str(state))  # the recorded count: node 2 stays as it is
    assert f"virt-handler-{node2} already running" in again.stdout
    assert int((base / "libvirtd.pid").read_text()) == daemon_pid

    down = virtctl("down", "--state-dir", str(state))
    assert f"virt-handler-{node2} stopped" in down.stdout
    assert f"libvirtd         of node {node2} stopped" in down.stdout
    assert not [pid for pid, line in libvirtd_cmdlines().items() if str(base) in line]
    assert not Path(f"/proc/{daemon_pid}").exists() or daemon_pid not in libvirtd_cmdlines()
    assert not ExtraNode(node2, "", 0).short_run_dir(load_layout(state)).exists()
    assert socket.gethostname() != node2
    virtctl("down", "--state-dir", str(state), "--wipe")
    assert not state.exists()  # the node's host name lived only in its UTS namespace
