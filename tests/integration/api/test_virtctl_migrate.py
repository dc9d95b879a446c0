"""``virtctl migrate`` / ``migrate-cancel`` / ``migrate --wait`` as a user runs them (a real
virtctl process) against virt-api. No virt-migration runs here: the test writes the VMIM's
status as virt-migration would, through the status subresource, while virtctl follows it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.integration.api.conftest import PROJECT_ROOT
from tests.integration.api.test_migration_api import V1, put_vmi
from tests.integration.api.vm_factory import make_vm

MiB = 1024 * 1024


@pytest.fixture
def http(api):
    with api.session() as session:
        yield lambda method, path, **kw: session.request(method, api.url + path, timeout=30, **kw)


@pytest.fixture
def virtctl(api):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "build")])}
    env.pop("KUBECONFIG", None)

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "services.virtctl.main", "--kubeconfig", str(api.kubeconfig),
                                 *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = start(*args)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    run.start = start  # type: ignore[attr-defined]
    return run


def running_vm(http, namespace: str, name: str) -> None:
    assert http("POST", f"{V1}/namespaces/{namespace}/virtualmachines", json=make_vm(name)).status_code == 201
    put_vmi(http, namespace, name, "Running")


def vmims(http, namespace: str) -> list[dict]:
    return http("GET", f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations").json()["items"]


def test_migrate_and_cancel(http, virtctl, namespace):
    running_vm(http, namespace, "vm1")
    done = virtctl("migrate", "vm1", "-n", namespace, "--addedNodeSelector", "zone=b,disk=ssd")
    assert (done.returncode, done.stdout, done.stderr) == (0, "VM vm1 was scheduled to migrate\n", "")
    [vmim] = vmims(http, namespace)
    assert vmim["spec"]["addedNodeSelector"] == {"zone": "b", "disk": "ssd"}

    again = virtctl("migrate", "vm1", "-n", namespace)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == (
        "virtctl: error: Error migrating VirtualMachine Internal error occurred: admission webhook "
        '"migration-create-validator.kubevirt.io" denied the request: in-flight migration detected. Active '
        f"migration job ({vmim['metadata']['uid']}) is currently already in progress for VMI vm1.\n")

    dry = virtctl("migrate-cancel", "vm1", "-n", namespace, "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "VM vm1 was scheduled to migrate-cancel\n")
    assert "deletionTimestamp" not in vmims(http, namespace)[0]["metadata"]
    cancel = virtctl("migrate-cancel", "vm1", "-n", namespace)
    assert (cancel.returncode, cancel.stdout) == (0, "VM vm1 was scheduled to migrate-cancel\n")
    assert vmims(http, namespace)[0]["metadata"]["deletionTimestamp"]  # held by its finalizer

    none = virtctl("migrate-cancel", "other", "-n", namespace)
    assert (none.returncode, none.stderr) == (1, "virtctl: error: Found no migration to cancel for other\n")
    stopped = virtctl("migrate", "ghost", "-n", namespace)
    assert stopped.returncode == 1
    assert stopped.stderr == ('virtctl: error: Error migrating VirtualMachine virtualmachines.kubevirt.io "ghost" '
                              "not found\n")
    bad = virtctl("migrate", "vm1", "-n", namespace, "--addedNodeSelector", "zone")
    assert bad.returncode == 2 and "must be formatted as key=value" in bad.stderr


def _wait_for_vmim(http, namespace: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = vmims(http, namespace)
        if items:
            return items[0]
        time.sleep(0.1)
    raise AssertionError("virtctl created no VMIM")


def _write_status(http, namespace: str, vmim: dict, status: dict) -> dict:
    path = f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations/{vmim['metadata']['name']}"
    current = http("GET", path).json()
    current["status"] = status
    resp = http("PUT", f"{path}/status", json=current)
    assert resp.status_code == 200, resp.text
    time.sleep(0.3)
    return resp.json()


def test_migrate_wait_follows_phases_and_progress_and_prints_the_downtime(http, virtctl, namespace):
    running_vm(http, namespace, "vm2")
    proc = virtctl.start("migrate", "vm2", "-n", namespace, "--wait", "--timeout", "60")
    try:
        vmim = _wait_for_vmim(http, namespace)
        for phase in ("Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady"):
            _write_status(http, namespace, vmim, {"phase": phase})
        for processed, remaining, iteration in ((64, 192, 1), (200, 20, 2)):
            _write_status(http, namespace, vmim, {"phase": "Running", "migrationState": {"progress": {
                "dataProcessedBytes": processed * MiB, "dataRemainingBytes": remaining * MiB,
                "dataTotalBytes": 256 * MiB, "memoryIteration": iteration, "transferRateBytes": 100 * MiB}}})
        _write_status(http, namespace, vmim, {"phase": "Succeeded", "migrationState": {
            "sourceNode": "node-1", "targetNode": "node-2", "completed": True, "progress": {"downtimeMs": 37}}})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "VM vm2 was scheduled to migrate"
    assert lines[1] == f"Following migration {vmim['metadata']['name']} (Ctrl-C stops following, not the migration)"
    phases = [line.split()[0] for line in lines if line.startswith("  ") and "+" in line]
    assert phases[-7:] == ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running",
                           "Succeeded"]
    assert "  progress: 64.0 MiB of 256.0 MiB transferred, 192.0 MiB remaining, iteration 1, 100.0 MiB/s" in lines
    assert "  progress: 200.0 MiB of 256.0 MiB transferred, 20.0 MiB remaining, iteration 2, 100.0 MiB/s" in lines
    assert lines[-1].startswith(f"Migration {vmim['metadata']['name']} succeeded from node-1 to node-2: "
                                "downtime 37 ms (QEMU-reported), total ")


def test_migrate_wait_fails_in_one_line_with_the_failure_reason(http, virtctl, namespace):
    running_vm(http, namespace, "vm3")
    proc = virtctl.start("migrate", "vm3", "-n", namespace, "--wait")
    try:
        vmim = _wait_for_vmim(http, namespace)
        _write_status(http, namespace, vmim, {"phase": "Running"})
        _write_status(http, namespace, vmim, {"phase": "Failed", "migrationState": {
            "completed": True, "failed": True, "failureReason": "progress timeout: no progress for 150s"}})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert err == (f"virtctl: error: migration {vmim['metadata']['name']} failed: "
                   "progress timeout: no progress for 150s\n")


def test_migrate_wait_gives_up_after_its_timeout(http, virtctl, namespace):
    running_vm(http, namespace, "vm4")
    done = virtctl("migrate", "vm4", "-n", namespace, "--wait", "--timeout", "1")
    assert done.returncode == 1
    name = vmims(http, namespace)[0]["metadata"]["name"]
    assert done.stderr == f"virtctl: error: timed out after 1s waiting for migration {name}\n"
