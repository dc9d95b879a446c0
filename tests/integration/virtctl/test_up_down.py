"""``virtctl up`` / ``down`` / ``status`` as a user runs them: real processes, real ports, a
private state directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from services.virtctl.installation import SERVICES
from shared.natsserver import pick_free_port

from hosts_installation import is_running, virtctl
from hosts_installation import recorded_pids as pids

# the handler on libvirt's test driver: these tests are about processes, not guests
TEST_NODE = ("--libvirt-uri", "test:///default")


@pytest.fixture
def state(tmp_path: Path):
    directory = tmp_path / "state"
    yield directory
    if (directory / "installation.json").exists():
        virtctl("down", "--state-dir", str(directory), check=False)


def test_up_is_idempotent_down_keeps_data_and_wipe_removes_it(state: Path):
    port = pick_free_port()
    first = virtctl("up", "--state-dir", str(state), "--api-port", str(port), *TEST_NODE)
    assert "nats-server      started" in first.stdout and "virt-api         started" in first.stdout
    kubeconfig = state / "kubeconfig"
    assert f"kubeconfig: {kubeconfig}" in first.stdout
    assert f"kubectl --kubeconfig {kubeconfig}" in first.stdout
    assert str(state / "logs") in first.stdout
    assert "kubevirt         kubevirt/kubevirt created" in first.stdout
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
    started = pids(state)
    assert set(started) == {spec.name for spec in SERVICES} and all(is_running(p) for p in started.values())

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    custom = client.CustomObjectsApi(api_client)
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "keep-me"},
          "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {
              "devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}}}}
    custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm)
    kv = custom.get_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt")
    assert kv["status"]["phase"] == "Deployed"
    custom.patch_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt",
                                          {"spec": {"configuration": {"migrations": {"allowPostCopy": True}}}})
    api_client.close()

    second = virtctl("up", "--state-dir", str(state))
    assert "already running" in second.stdout and "started" not in second.stdout
    assert "(unchanged)" in second.stdout
    assert "kubevirt         kubevirt/kubevirt unchanged" in second.stdout
    assert pids(state) == started
    assert virtctl("status", "--state-dir", str(state)).stdout.count("healthy") == len(SERVICES)

    down = virtctl("down", "--state-dir", str(state))
    assert "virt-api         stopped" in down.stdout and "nats-server      stopped" in down.stdout
    assert not any(is_running(p) for p in started.values())
    assert (state / "nats" / "jetstream").is_dir() and kubeconfig.exists()
    assert virtctl("status", "--state-dir", str(state), check=False).returncode == 1

    virtctl("up", "--state-dir", str(state))  # same port (recorded), same data, same CA and token
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    kept = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachines", "keep-me")
    api_client.close()
    assert kept["metadata"]["name"] == "keep-me"

    wiped = virtctl("down", "--state-dir", str(state), "--wipe")
    assert "wiped" in wiped.stdout
    assert not state.exists()


def test_down_never_touches_a_process_it_did_not_start(state: Path):
    port = pick_free_port()
    virtctl("up", "--state-dir", str(state), "--api-port", str(port), *TEST_NODE)
    real = pids(state)
    virtctl("down", "--state-dir", str(state))
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # a stale record now pointing at an unrelated process (as after a pid is recycled)
        (state / "run").mkdir(exist_ok=True)
        (state / "run" / "virt-api.json").write_text(json.dumps(
            {"pid": stranger.pid, "argv": ["python", "-m", "services.virt_api.main"]}))
        out = virtctl("down", "--state-dir", str(state)).stdout
        assert "virt-api         not running" in out
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert not any(is_running(p) for p in real.values())


def test_up_on_a_busy_port_fails_with_one_readable_line(state: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = virtctl("up", "--state-dir", str(state), "--api-port", str(port), *TEST_NODE, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    log = state / "logs" / "virt-api.log"
    assert lines == [f"virtctl: error: virt-api exited during start-up: virt-api: OSError: [Errno 98] error while attempting "
                     f"to bind on address ('127.0.0.1', {port}): address already in use (log: {log}) "
                     f"(stopped again: nats-server)"]
    # nothing this failed 'up' started keeps running
    assert not [p for p in pids(state).values() if is_running(p)]


def test_client_commands_without_a_kubeconfig_fail_in_one_line(tmp_path: Path):
    env_free = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run([sys.executable, "-m", "services.virtctl.main", "status", "--state-dir",
                           str(tmp_path / "none")], capture_output=True, text=True, env=env_free, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"virtctl: error: no installation in {tmp_path / 'none'}; run 'virtctl up'"]
