"""Live migration of the demo guest as a new user does it (issue 10's first two "must show" items).

One ``virtctl up --nodes 2`` serves the module (:mod:`tests.e2e.migration_stack`): node 1 on the
system libvirtd, node 2 on a private libvirtd with its own host UUID; ``examples/vm-demo.yaml`` runs
in a namespace of its own, its pod interface bound by ``masquerade`` (the default ``bridge``
binding is not live-migratable, in KubeVirt as here). In order, on the same guest:

1. ``virtctl migrate vm-demo --wait`` -> the VMIM Succeeded through every phase, the VMI's
   ``nodeName`` is the other node, its domain exists only on that node's libvirt (and the source's
   per-VMI files are gone), the guest did not restart (its uptime read through ``virtctl console``
   keeps growing, the same shell answers with the variable set before), the guest agent is
   connected again; then migrating back does the same in the other direction.
2. A MigrationPolicy limits the VM's migrations to 1 MiB/s; ``virtctl migrate-cancel`` while it is
   Running -> the VMIM ends Failed with ``abortStatus: Succeeded``, the guest still runs on the
   source, untouched, and nothing is left on the target.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from tests.e2e.migration_stack import (
    ROOT,
    VMIMS,
    MigStack,
    demo_vm_manifest,
    needs_qemu,
    qemu_pids,
    read_shell,
    two_node_installation,
    wait_for,
)
from tests.e2e.migration_watch import MigrationRecorder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600), needs_qemu]

PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
POLICY = "mig-e2e-slow"


@pytest.fixture(scope="module")
def stack(system_libvirtd):
    with two_node_installation("e2e-mig") as installation:
        installation.apply_vm(demo_vm_manifest())
        installation.wait_running()
        yield installation


def agent_connected_on(stack: MigStack, node: str) -> dict | None:
    vmi = stack.vmi()
    ok = vmi and vmi["status"].get("nodeName") == node and stack.condition(vmi, "AgentConnected") == "True"
    return vmi if ok else None


def assert_only_on(stack: MigStack, node: str, uid: str) -> None:
    """The VM's domain runs on ``node`` and is not defined on the other one, whose per-VMI
    directory is gone; one QEMU process."""
    other = stack.other(node)
    wait_for(lambda: stack.domains(other) == [], 60, what=f"no domain left on {other}")
    assert stack.domains(node, "--state-running") == [stack.domain]
    assert stack.domain_state(node) == "running"
    wait_for(lambda: not stack.vmi_dir(other, uid).exists(), 60, what=f"{stack.vmi_dir(other, uid)} removed")
    assert len(qemu_pids(stack.domain)) == 1


def migrate_and_check(stack: MigStack, before: dict, token: str, shell_pid: int, uptime: float) -> float:
    """``virtctl migrate vm-demo --wait`` from the VMI's node; checks everything; returns the uptime."""
    source = before["status"]["nodeName"]
    target = stack.other(source)
    known = {m["metadata"]["uid"] for m in stack.migrations()}
    started = time.monotonic()
    out = stack.vctl("migrate", "vm-demo", "--wait", timeout=300).stdout
    assert "VM vm-demo was scheduled to migrate" in out
    assert "downtime" in out.lower(), out

    (vmim,) = [m for m in stack.migrations() if m["metadata"]["uid"] not in known]
    status = vmim["status"]
    assert status["phase"] == "Succeeded", status
    stamps = [t["phase"] for t in status["phaseTransitionTimestamps"]]
    assert [p for p in stamps if p in PHASES] == PHASES, stamps
    state = status["migrationState"]
    assert (state["sourceNode"], state["targetNode"]) == (source, target)
    assert state["completed"] is True and not state.get("failed")
    assert state["migrationUid"] == vmim["metadata"]["uid"]
    assert state["progress"]["downtimeMs"] >= 0

    vmi = stack.vmi()
    assert vmi["metadata"]["uid"] == before["metadata"]["uid"]
    assert vmi["status"]["phase"] == "Running"
    assert vmi["status"]["nodeName"] == target
    assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == target
    vmi_state = vmi["status"]["migrationState"]
    assert vmi_state["migrationUid"] == vmim["metadata"]["uid"] and vmi_state["completed"] is True
    assert vmi_state["targetNodeDomainDetected"] is True and vmi_state.get("startTimestamp")
    assert vmi["status"]["migrationMethod"] == "BlockMigration"  # containerDisk + cloud-init: local disks
    assert_only_on(stack, target, vmi["metadata"]["uid"])

    after = read_shell(stack)
    assert after.shell_pid == shell_pid and after.token == token, "another shell: the guest restarted"
    assert after.uptime > uptime + 0.5 * (time.monotonic() - started), (uptime, after.uptime)
    wait_for(lambda: agent_connected_on(stack, target), 90, what="AgentConnected=True on the target")
    info = stack.vctl("guestosinfo", "vm-demo").stdout
    assert '"kubevirt-py-demo"' in info
    return after.uptime


def test_1_migrate_there_and_back_keeps_the_guest_running(stack: MigStack):
    first = stack.vmi()
    node1 = first["status"]["nodeName"]
    wait_for(lambda: agent_connected_on(stack, node1), 90, what="AgentConnected=True before migrating")
    token = secrets.token_hex(4)
    shell = read_shell(stack, set_token=token)
    assert shell.token == token
    uptime = migrate_and_check(stack, first, token, shell.shell_pid, shell.uptime)
    assert stack.vmi()["status"]["nodeName"] == stack.other(node1)
    migrate_and_check(stack, stack.vmi(), token, shell.shell_pid, uptime)
    assert stack.vmi()["status"]["nodeName"] == node1


def test_2_cancel_of_a_slow_migration_leaves_the_guest_on_the_source(stack: MigStack):
    before = stack.vmi()
    source = before["status"]["nodeName"]
    target = stack.other(source)
    uid = before["metadata"]["uid"]
    pid_before = qemu_pids(stack.domain)
    shell = read_shell(stack, set_token="cancel")
    stack.api.create_cluster_custom_object("migrations.kubevirt.io", "v1alpha1", "migrationpolicies", {
        "apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": POLICY},
        "spec": {"selectors": {"virtualMachineInstanceSelector": {"kubevirt.io/vm": "vm-demo"}},
                 "bandwidthPerMigration": "1Mi"}})
    follow = None
    recorder = MigrationRecorder(stack).__enter__()
    try:
        known = {m["metadata"]["uid"] for m in stack.migrations()}
        follow = subprocess.Popen([sys.executable, "-m", "services.virtctl.main", "--kubeconfig", stack.kubeconfig,
                                   "-n", stack.namespace, "migrate", "vm-demo", "--wait"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

        def running_with_progress():
            fresh = [m for m in stack.migrations() if m["metadata"]["uid"] not in known]
            status = (fresh[0].get("status") or {}) if fresh else {}
            processed = ((status.get("migrationState") or {}).get("progress") or {}).get("dataProcessedBytes") or 0
            return fresh[0] if status.get("phase") == "Running" and processed > 0 else None

        vmim = wait_for(running_with_progress, 120, what="the slowed migration Running with progress")
        state = vmim["status"]["migrationState"]
        assert state["migrationPolicyName"] == POLICY
        assert state["migrationConfiguration"]["bandwidthPerMigration"] == "1Mi"
        assert stack.domain_state(target) == "paused"  # the incoming guest waits for its memory

        cancel = stack.vctl("migrate-cancel", "vm-demo")
        assert "cancel" in cancel.stdout.lower(), cancel.stdout
        out, err = follow.communicate(timeout=120)
        assert follow.returncode == 1, out + err  # --wait reports the failed (cancelled) migration

        # the cancel deleted the VMIM: its finalizer keeps it until it is final, then it goes
        name = vmim["metadata"]["name"]
        wait_for(lambda: stack.get(VMIMS, name) is None, 120, what=f"{name} final and removed")
        finals = [s["status"] for s in recorder.states(name)
                  if (s.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        assert finals and {f["phase"] for f in finals} == {"Failed"}, [s.get("status") for s in recorder.states(name)]
        conditions = {c["type"]: c["status"] for c in finals[-1].get("conditions") or []}
        assert conditions.get("migrationAbortRequested") == "True", finals[-1]
        assert finals[-1]["migrationState"]["abortStatus"] == "Succeeded"

        vmi = stack.vmi()
        assert vmi["metadata"]["uid"] == uid and vmi["status"]["phase"] == "Running"
        assert vmi["status"]["nodeName"] == source
        vmi_state = vmi["status"]["migrationState"]
        assert vmi_state["migrationUid"] == vmim["metadata"]["uid"]
        assert vmi_state["abortStatus"] == "Succeeded"
        assert vmi_state["completed"] is True and vmi_state["failed"] is True
        assert_only_on(stack, source, uid)
        assert qemu_pids(stack.domain) == pid_before  # the very same QEMU process
        after = read_shell(stack)
        assert (after.shell_pid, after.token) == (shell.shell_pid, "cancel") and after.uptime > shell.uptime
    finally:
        recorder.__exit__()
        if follow is not None and follow.poll() is None:
            follow.kill()
            follow.communicate()
        stack.api.delete_cluster_custom_object("migrations.kubevirt.io", "v1alpha1", "migrationpolicies", POLICY)
