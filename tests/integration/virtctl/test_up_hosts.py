"""``virtctl up --hosts 3`` as a user runs it: three network namespaces on a private bridge, a
NATS cluster with R3 buckets, two replicas of each control-plane service, a virt-handler per host
(on libvirt's test driver: this test is about hosts and processes, not guests); the API through
either virt-api replica; NATS with TLS and one user per service; a VM Running and migrated with the target's bridge address; client
fail-over; ``down`` leaves no namespace, link or process."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from hosts_installation import is_running, monitoring, recorded_pids, virtctl, wait_for
from services.virtctl.hosts import compute_specs, load_hosts_record
from services.virtctl.installation import load_layout, stop
from shared import bus, netns
from shared.errors import ServiceUnavailable
from shared.nats_auth import ROLES

pytestmark = pytest.mark.timeout(300)
VMS = ("kubevirt.io", "v1", "default", "virtualmachines")
VMIS = ("kubevirt.io", "v1", "default", "virtualmachineinstances")


def api_of(kubeconfig: Path, context: str | None = None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig), context=context))


def ready_nodes(kubeconfig: Path, context: str) -> dict[str, str]:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig), context=context))
    # raw JSON: the client's models insist on nodeInfo fields a kubelet fills (bootID, ...)
    items = json.loads(core.list_node(_preload_content=False).data)["items"]
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
            for n in items}


def node_addresses(kubeconfig: Path) -> dict[str, list[dict[str, str]]]:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    items = json.loads(core.list_node(_preload_content=False).data)["items"]
    return {n["metadata"]["name"]: n["status"]["addresses"] for n in items}


def connections(address: str) -> list[dict]:
    return monitoring(address, "/connz?auth=true")["connections"]


def jetstream_replicas(address: str) -> dict[str, int]:
    data = monitoring(address, "/jsz?streams=1&config=1")
    return {s["name"]: s["config"]["num_replicas"] for a in data["account_details"] for s in a["stream_detail"]}


def test_three_hosts_up_serve_migrate_fail_over_and_down(hosts_state: Path):
    state = hosts_state
    up = virtctl("up", "--state-dir", str(state), "--hosts", "3", "--libvirt-uri", "test:///default")
    layout = load_layout(state)
    record = load_hosts_record(layout)
    assert record is not None
    addresses = {h.name: str(h.address) for h in record.plan.hosts}
    for host in ("host1", "host2", "host3"):
        assert re.search(rf"nats-server-{host} +started \(pid \d+\)", up.stdout), up.stdout
        assert re.search(rf"virt-handler-{host} +started \(pid \d+\)", up.stdout), up.stdout
    assert f"API:        https://{addresses['host1']}:8443 (host1; context kubevirt-py)" in up.stdout
    assert f"https://{addresses['host2']}:8443 (host2; context kubevirt-py-host2)" in up.stdout

    # every process runs inside its host's namespace, the one its name says
    pids = recorded_pids(state)
    assert len(pids) == 16
    host_netns = {host.name: Path(f"/run/netns/{host.netns}").stat().st_ino for host in record.plan.hosts}
    for name, pid in pids.items():
        host = name.rsplit("-", 1)[1]
        assert Path(f"/proc/{pid}/ns/net").stat().st_ino == host_netns[host], name

    kubeconfig = state / "kubeconfig"
    for context in ("kubevirt-py", "kubevirt-py-host2"):
        nodes = wait_for(lambda c=context: (r := ready_nodes(kubeconfig, c)) == dict.fromkeys(addresses, "True") and r)
        assert sorted(nodes) == ["host1", "host2", "host3"]
    assert set(jetstream_replicas(addresses["host1"]).values()) == {3}
    # each Node's addresses as kubelet's: the host's own address (INTERNAL-IP of -o wide), its name
    assert node_addresses(kubeconfig) == {host: [{"type": "InternalIP", "address": address},
                                                 {"type": "Hostname", "address": host}]
                                          for host, address in addresses.items()}
    # a one-machine option on these hosts is refused, naming them; nothing changes
    refused = virtctl("up", "--state-dir", str(state), "--nodes", "2", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(
        "virtctl: error: this installation has 3 hosts (each one a node), so --nodes does not apply"), refused.stderr

    # NATS is secured as on one host: each service over TLS as its own user; no anonymous client
    for host in ("host1", "host2", "host3"):
        for connection in connections(addresses[host]):
            role = connection["authorized_user"]
            assert role in ROLES and connection["name"].startswith(role), connection
            assert connection["tls_version"] == "1.3", connection
    with pytest.raises(ServiceUnavailable, match="[Aa]uthorization"):
        asyncio.run(bus.connect([f"tls://{addresses['host1']}:4222"], name="anonymous", tls_ca=layout.ca_cert))

    status = virtctl("status", "--state-dir", str(state)).stdout
    assert f"host2    {addresses['host2']}  netns {record.plan.host('host2').netns}, NATS kubevirt-py-host2" in status
    for service in ("virt-controller", "virt-migration", "virt-snapshot", "scheduler-bridge"):
        roles = wait_for(lambda s=service: _roles(virtctl("status", "--state-dir", str(state)).stdout, s))
        assert sorted(roles) == ["leader", "standby"], (service, status)

    # a VM created through host2's virt-api runs on some host; a migration's target address is the
    # target host's bridge address
    api2 = api_of(kubeconfig, "kubevirt-py-host2")
    api2.create_namespaced_custom_object(*VMS, {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "vm-hosts"},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {
            "devices": {"autoattachPodInterface": False}, "resources": {"requests": {"memory": "64Mi"}}}}}}})
    vmi = wait_for(lambda: _vmi_running(api2), timeout=60)
    source = vmi["status"]["nodeName"]
    assert source in addresses
    # --wait watches from a resourceVersion: every NATS user may make the compaction watermark bucket
    migrate = virtctl("--kubeconfig", str(kubeconfig), "migrate", "vm-hosts", "--wait")
    assert re.search(rf"succeeded from {source} to host\d", migrate.stdout), migrate.stdout
    migrated = wait_for(lambda: _migrated(api2), timeout=30)
    target = migrated["status"]["migrationState"]["targetNode"]
    assert target != source and migrated["status"]["nodeName"] == target
    assert migrated["status"]["migrationState"]["targetNodeAddress"] == addresses[target]

    # host1's virt-api stopped: virtctl's client turns to host2's; a second up starts only it again
    specs = {spec.name: spec for spec in compute_specs(record)}
    assert stop(layout, specs["virt-api-host1"])
    stopped = virtctl("--kubeconfig", str(kubeconfig), "stop", "vm-hosts")
    assert stopped.stdout.strip() == "VM vm-hosts was scheduled to stop"
    again = virtctl("up", "--state-dir", str(state))
    assert re.search(r"virt-api-host1 +started", again.stdout), again.stdout
    assert len(re.findall(r"already running", again.stdout)) == 15
    assert "kubeconfig: " in again.stdout and "(unchanged)" in again.stdout

    down = virtctl("down", "--state-dir", str(state))
    assert f"network                  bridge {record.plan.bridge} and 3 hosts removed" in down.stdout
    assert not any(is_running(pid) for pid in recorded_pids(state).values())
    assert not any(is_running(pid) for pid in pids.values() if pid != pids["virt-api-host1"])
    assert not {h.netns for h in record.plan.hosts} & netns.list_netns()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert f"kvpy{record.plan.key}" not in links
    assert virtctl("down", "--state-dir", str(state), "--wipe").returncode == 0
    assert not state.exists()


def _roles(status: str, service: str) -> list[str] | None:
    roles = re.findall(rf"^  {service} +running \(pid \d+\), healthy, (leader|standby)$", status, re.MULTILINE)
    return roles if sorted(roles) == ["leader", "standby"] else None


def _vmi_running(api: client.CustomObjectsApi):
    try:
        vmi = api.get_namespaced_custom_object(*VMIS, "vm-hosts")
    except client.ApiException:
        return None
    return vmi if (vmi.get("status") or {}).get("phase") == "Running" else None


def _migrated(api: client.CustomObjectsApi):
    vmi = api.get_namespaced_custom_object(*VMIS, "vm-hosts")
    state = (vmi.get("status") or {}).get("migrationState") or {}
    return vmi if state.get("completed") and vmi["status"].get("nodeName") == state.get("targetNode") else None


def test_hosts_and_nodes_exclude_each_other(tmp_path: Path):
    result = virtctl("up", "--state-dir", str(tmp_path / "s"), "--hosts", "2", "--nodes", "2", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "virtctl: error: --hosts and --nodes exclude each other (every host is a node)")
    assert not (tmp_path / "s" / "hosts").exists()


def test_hosts_never_start_over_a_one_machine_installations_data(tmp_path: Path):
    # what 'virtctl down' (without --wipe) of a one-machine installation leaves
    state = tmp_path / "s"
    (state / "nats" / "jetstream").mkdir(parents=True)
    (state / "virt-handler" / "vmis").mkdir(parents=True)
    result = virtctl("up", "--state-dir", str(state), "--hosts", "3", check=False)
    assert (result.returncode, result.stderr) == (
        1, "virtctl: error: this state directory holds a one-machine installation's data; "
           "'virtctl down --wipe' it or use another --state-dir\n")
    assert sorted(p.name for p in state.iterdir()) == ["nats", "virt-handler"]  # nothing written


@pytest.mark.parametrize("args, message", [
    (["--hosts", "2", "--testing-failure-timing", "1,2,3,4"],
     "Invalid value for '--testing-failure-timing': '1,2,3,4': --heartbeat-timeout 3 s must be at least "
     "--fence-after 2 s + margin 4 s"),
    (["--hosts", "2", "--testing-failure-timing", "1,6,12"],
     "Invalid value for '--testing-failure-timing': '1,6,12': expected INTERVAL,FENCE_AFTER,HEARTBEAT_TIMEOUT,MARGIN"),
    (["--testing-libvirt-driver", "test"],
     "--testing-libvirt-driver and --testing-failure-timing apply to --hosts only"),
])
def test_testing_options_are_checked_before_anything_is_made(tmp_path: Path, args: list[str], message: str):
    result = virtctl("up", "--state-dir", str(tmp_path / "s"), *args, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"virtctl: error: {message}"), result.stderr
    assert not (tmp_path / "s" / "hosts").exists() and not (tmp_path / "s" / "installation.json").exists()
