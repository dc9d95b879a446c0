"""``kill -9`` of the source handler, the target handler and virt-migration in each migration phase.

One ``virtctl up --nodes 2`` and one real demo guest (TCG) serve the module
(:mod:`tests.e2e.migration_stack`); the guest prints ``tick <uptime>`` on its serial console
every 2 s, so its uptime can be read from the console log of the node that runs it. Each test
moves the guest to the other node with one VMIM, holding the VMIM in one phase while the victim
is killed with SIGKILL and started again the way ``virtctl up`` starts it:

=================  ==========================================================================
phase              how it is held (the actor that would move it on is kept from doing so)
=================  ==========================================================================
Pending            ``parallelMigrationsPerCluster: 0`` in the KubeVirt object (then removed)
Scheduling         scheduler-bridge SIGSTOPped (SIGCONT after the restart)
Scheduled          virt-migration SIGSTOPped by a watch the moment it wrote Scheduled (the target
                   handler is stopped beforehand so a missed catch stops in PreparingTarget and
                   is retried)
PreparingTarget    the target handler SIGSTOPped before the VMIM exists
TargetReady        the source handler SIGSTOPped before the VMIM exists
Running            ``bandwidthPerMigration: 16Mi`` (about 6 s of memory transfer)
=================  ==========================================================================

Afterwards (:func:`assert_consistent`): the VMIM is final, exactly one domain runs across both
node daemons, on the node the VMI's ``nodeName`` names, Succeeded <=> it moved; nothing of the
VMI on the other node (no domain defined, no per-VMI directory); the guest was not restarted (a
failed migration leaves the same QEMU process and libvirt domain id; a successful one shows the
guest's uptime continuing on the target, whose console log never saw a boot banner).
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.e2e.migration_stack import (
    VMIMS,
    MigStack,
    demo_vm_manifest,
    needs_qemu,
    qemu_pids,
    two_node_installation,
    virtctl,
    wait_for,
)
from tests.e2e.migration_watch import MigrationRecorder, PhaseCatcher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180), needs_qemu]

PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running"]
VICTIMS = ["source-handler", "target-handler", "virt-migration"]
FINAL = ("Succeeded", "Failed")
TICKS = """#!/bin/sh
(while true; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 2; done) &
"""
TICK = re.compile(rb"tick (\d+\.\d+)")
OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="module")
def stack(system_libvirtd):
    with two_node_installation("e2e-kill") as installation:
        installation.apply_vm(demo_vm_manifest(TICKS))
        installation.wait_running()
        yield installation
        print("\nkill -9 outcomes:", OUTCOMES)


@pytest.fixture(autouse=True)
def recovered(stack: MigStack):
    """After each test, whatever happened: every process continued, limits back to defaults,
    any missing process started again (``virtctl up``)."""
    yield
    stack.resume_all()
    stack.set_migration_config(parallelMigrationsPerCluster=None, bandwidthPerMigration=None)
    if stack.missing_processes():
        virtctl("up", "--state-dir", str(stack.state))


def last_tick(stack: MigStack, node: str, uid: str) -> float:
    try:
        ticks = TICK.findall(stack.console_log(node, uid).read_bytes())
    except OSError:
        return 0.0
    return float(ticks[-1]) if ticks else 0.0


def domain_id(stack: MigStack, node: str) -> str:
    return subprocess.run(["virsh", "-c", stack.nodes[node].uri, "domid", stack.domain], capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()


@dataclass(frozen=True)
class Before:
    uid: str
    source: str
    target: str
    qemu_pid: int
    domain_id: str
    uptime: float


def settled(stack: MigStack, timeout: float = 90) -> Before:
    """The guest at rest: Running on one node, no migration in flight, nothing on the other node."""
    def at_rest():
        vmi = stack.vmi()
        if not vmi or vmi["status"].get("phase") != "Running":
            return None
        if any((m.get("status") or {}).get("phase") not in FINAL for m in stack.migrations()):
            return None
        node = vmi["status"]["nodeName"]
        other = stack.other(node)
        if stack.domains(other) or stack.vmi_dir(other, vmi["metadata"]["uid"]).exists():
            return None
        pids = qemu_pids(stack.domain)
        return vmi if stack.domains(node, "--state-running") == [stack.domain] and len(pids) == 1 else None

    vmi = wait_for(at_rest, timeout, 0.5, what="the guest at rest on one node")
    node, uid = vmi["status"]["nodeName"], vmi["metadata"]["uid"]
    uptime = wait_for(lambda: last_tick(stack, node, uid), 30, what="a tick on the console")
    return Before(uid, node, stack.other(node), qemu_pids(stack.domain)[0], domain_id(stack, node), uptime)


def phase_of(stack: MigStack, name: str) -> str | None:
    return ((stack.get(VMIMS, name) or {}).get("status") or {}).get("phase")


def hold(stack: MigStack, phase: str, before: Before, name: str) -> list:
    """Create VMIM ``name`` and hold it in ``phase``; returns the release steps (callables)."""
    procs = {"source-handler": stack.nodes[before.source].process,
             "target-handler": stack.nodes[before.target].process}
    releases = []
    if phase == "Pending":
        stack.set_migration_config(parallelMigrationsPerCluster=0)
        releases.append(lambda: stack.set_migration_config(parallelMigrationsPerCluster=None))
    elif phase == "Running":
        stack.set_migration_config(bandwidthPerMigration="16Mi")
    elif phase in ("Scheduling", "PreparingTarget", "TargetReady", "Scheduled"):
        holder = {"Scheduling": "scheduler-bridge", "PreparingTarget": procs["target-handler"],
                  "TargetReady": procs["source-handler"], "Scheduled": procs["target-handler"]}[phase]
        stack.signal(holder, signal.SIGSTOP)
        releases.append(lambda: stack.signal(holder, signal.SIGCONT))
    for attempt in range(3):
        catcher = None
        if phase == "Scheduled":
            catcher = PhaseCatcher(stack, f"{name}-{attempt}", "Scheduled", stack.pid("virt-migration"),
                                   signal.SIGSTOP)
            catcher.start()
        vmim = stack.create_migration(f"{name}-{attempt}")["metadata"]["name"]
        if phase == "Running":
            def transferring():
                state = (stack.get(VMIMS, vmim) or {}).get("status", {}).get("migrationState") or {}
                return phase_of(stack, vmim) == "Running" and (state.get("progress") or {}).get("dataProcessedBytes")
            wait_for(transferring, 60, 0.1, what=f"{vmim} Running with progress")
            return [*releases, vmim]
        if catcher is None:
            wait_for(lambda: phase_of(stack, vmim) == phase, 60, 0.1, what=f"{vmim} in {phase}")
            time.sleep(1.0)  # held: it stays there
            assert phase_of(stack, vmim) == phase
            return [*releases, vmim]
        wait_for(lambda: catcher.caught.is_set() or phase_of(stack, vmim) == "PreparingTarget", 60, 0.05,
                 what=f"{vmim} past Scheduling")
        if catcher.caught.is_set() and phase_of(stack, vmim) == "Scheduled":
            return [*releases, lambda: stack.signal("virt-migration", signal.SIGCONT), vmim]
        # missed (virt-migration had already moved on): cancel this one and try again
        if catcher.caught.is_set():
            stack.signal("virt-migration", signal.SIGCONT)
        stack.api.delete_namespaced_custom_object("kubevirt.io", "v1", stack.namespace, VMIMS, vmim)
        wait_for(lambda: stack.get(VMIMS, vmim) is None, 60, what=f"{vmim} cancelled")
    raise AssertionError("virt-migration was never caught in Scheduled (3 attempts)")


def assert_consistent(stack: MigStack, before: Before, vmim: dict) -> str:
    """The checks of the module docstring; returns the VMIM's final phase."""
    phase = vmim["status"]["phase"]
    owner = before.target if phase == "Succeeded" else before.source
    other = stack.other(owner)
    vmi = stack.vmi()
    assert vmi["metadata"]["uid"] == before.uid and vmi["status"]["phase"] == "Running"
    assert vmi["status"]["nodeName"] == owner, (phase, vmi["status"]["nodeName"], vmi["status"].get("migrationState"))
    assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == owner
    wait_for(lambda: stack.condition(stack.vmi(), "Ready") == "True", 60, what="the VMI Ready")
    copy = vmim["status"].get("migrationState") or {}
    if phase == "Succeeded":
        assert (copy.get("sourceNode"), copy.get("targetNode")) == (before.source, before.target), copy
        assert copy.get("completed") is True and not copy.get("failed"), copy
    elif copy.get("startTimestamp"):
        assert copy.get("failed") is True, copy
    state = vmi["status"].get("migrationState") or {}
    if state.get("migrationUid") == vmim["metadata"]["uid"]:
        assert state.get("completed") is True
        assert bool(state.get("failed")) == (phase == "Failed"), state
    else:
        assert phase == "Failed", "a Succeeded migration must be the VMI's migrationState"
    wait_for(lambda: stack.domains(other) == [], 60, what=f"no domain on {other}")
    wait_for(lambda: not stack.vmi_dir(other, before.uid).exists(), 60, what=f"no VMI files on {other}")
    assert stack.domains(owner, "--state-running") == [stack.domain]
    wait_for(lambda: len(qemu_pids(stack.domain)) == 1, 30, what="one QEMU process")
    if phase == "Failed":
        assert qemu_pids(stack.domain) == [before.qemu_pid] and domain_id(stack, owner) == before.domain_id
    else:
        assert b"kubevirt-py demo guest" not in stack.console_log(owner, before.uid).read_bytes()
    wait_for(lambda: last_tick(stack, owner, before.uid) > before.uptime, 30, what="the guest's uptime growing")
    return phase


@pytest.mark.parametrize("victim", VICTIMS)
@pytest.mark.parametrize("phase", PHASES)
def test_kill_9_in_phase_leaves_one_guest_and_true_status(stack: MigStack, phase: str, victim: str):
    before = settled(stack)
    process = {"source-handler": stack.nodes[before.source].process,
               "target-handler": stack.nodes[before.target].process}.get(victim, victim)
    name = f"kill-{phase.lower()}-{victim.split('-')[0]}-{secrets.token_hex(2)}"
    with MigrationRecorder(stack) as recorder:
        *releases, vmim = hold(stack, phase, before, name)
        assert phase_of(stack, vmim) == phase
        stack.kill9(process)
        stack.restart(process)
        for release in releases:
            release()
        final = wait_for(lambda: (lambda m: m if m and m.get("status", {}).get("phase") in FINAL else None)(
            stack.get(VMIMS, vmim)), 120, 0.25, what=f"{vmim} final")
        wait_for(lambda: any(s.get("status", {}).get("phase") in FINAL for s in recorder.states(vmim)), 15,
                 what="the watch delivering the final state")
        seen = [s.get("status", {}).get("phase") for s in recorder.states(vmim)]
    outcome = assert_consistent(stack, before, final)
    OUTCOMES[f"{phase}/{victim}"] = f"{outcome} (attempt {vmim.rsplit('-', 1)[1]})"
    assert seen.count("Succeeded") + seen.count("Failed") >= 1
    assert "Succeeded" not in seen or "Failed" not in seen, seen  # never both
