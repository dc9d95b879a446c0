"""Snapshot and restore of a VM with a PVC data disk, as a new user does it (issue 11's "must show").

One ``virtctl up`` serves the module (:mod:`tests.e2e.snapshot_stack`): a 256 MiB
PersistentVolumeClaim ``data-a`` (made by the local provisioner) is the data disk of ``vm-a``
(``examples/vm-demo.yaml`` plus a virtio disk with serial ``data1``: the demo guest mounts it at
``/data/data1``). The guest is driven through ``virtctl console``; its syslog holds the guest
agent's fsfreeze hook lines (``fsfreeze-hook: freeze``/``thaw``). In order, on the same VM:

1. an online snapshot (``Online``, ``GuestAgent``; the agent logs freeze then thaw) of a file;
   the file changed, the VM stopped, restored, started: the file holds the old content;
2. a restore to a new VM name runs beside the original, with its own copy;
3. snapshots of a paused VM (``Paused``, no freeze) and of a stopped VM, both restored;
4. restores onto the running VM: ``FailImmediate`` fails and leaves it running,
   ``StopTarget`` stops it and restores;
5. a freeze that never answers (qemu-ga stopped with SIGSTOP) fails at ``failureDeadline`` and,
   after SIGCONT, the guest is thawed;
6. ``deletionPolicy: Delete`` removes the content and its copy, ``Retain`` keeps them;
7. ``kill -9`` of virt-snapshot between freeze and thaw: the handler thaws the guest at the
   unfreeze deadline, and the restarted virt-snapshot ends the snapshot Succeeded or Failed.
"""

from __future__ import annotations

import subprocess
import time

import pytest

libvirt = pytest.importorskip("libvirt")

from tests.e2e.e2e_helpers import needs_qemu, wait_for  # noqa: E402
from tests.e2e.guest_agent import AgentShell  # noqa: E402
from tests.e2e.snapshot_stack import (  # noqa: E402
    CONTENTS,
    RESTORES,
    SNAPSHOTS,
    SnapStack,
    condition,
    data_vm_manifest,
    one_node_installation,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500), needs_qemu]

VM, CLAIM, COPY_VM = "vm-a", "data-a", "vm-b"
DEADLINE_EXCEEDED = "snapshot deadline exceeded"
TARGET_NOT_READY = "Restore target VMI must be powered off before restore operation"


@pytest.fixture(scope="module")
def stack(system_libvirtd):
    with one_node_installation("e2e-snap", VM) as installation:
        installation.create_claim(CLAIM, "256Mi")
        installation.wait_claim_bound(CLAIM)
        installation.create("virtualmachines", data_vm_manifest(VM, CLAIM))
        installation.wait_vm_running()
        yield installation


def snapshot_status(stack: SnapStack, name: str) -> dict:
    return (stack.sget(SNAPSHOTS, name) or {}).get("status") or {}


def new_lines(before: list[str], after: list[str]) -> list[str]:
    assert after[:len(before)] == before, (before, after)
    return after[len(before):]


def assert_unlocked(stack: SnapStack, vm: str = VM) -> None:
    """No snapshot or restore holds the VM (KubeVirt's lock fields and finalizer)."""
    def unlocked():
        obj = stack.vm_object(vm)
        status = obj.get("status") or {}
        return (not status.get("snapshotInProgress") and not status.get("restoreInProgress")
                and "snapshot.kubevirt.io/snapshot-source-protection" not in (obj["metadata"].get("finalizers") or []))

    wait_for(unlocked, 60, 0.5, what=f"{vm} unlocked")


def restore_and_start(stack: SnapStack, restore: str, snapshot: str, expected: str, **spec: str) -> dict:
    """Restore ``snapshot`` onto the stopped main VM, start it, check the file; the restore."""
    stack.create_restore(restore, snapshot, **spec)
    done = stack.wait_restore_complete(restore)
    assert_unlocked(stack)
    stack.start_vm()
    assert stack.guest().read_data() == expected
    return done


def test_1_online_snapshot_then_restore_in_place(stack: SnapStack):
    guest = stack.guest()
    guest.write_data("v1")
    hooks = guest.freeze_log()
    vm = stack.vm_object()

    stack.create_snapshot("snap-online")
    snap = stack.wait_snapshot_ready("snap-online")
    status = snap["status"]
    assert status["phase"] == "Succeeded" and status["creationTime"]
    assert status["sourceUID"] == vm["metadata"]["uid"]
    assert {"Online", "GuestAgent", "PartialSnapshot"} <= set(status["indications"]), status["indications"]
    assert not {"NoGuestAgent", "Paused"} & set(status["indications"])
    assert status["snapshotVolumes"]["includedVolumes"] == ["data"]
    assert set(status["snapshotVolumes"]["excludedVolumes"]) == {"containerdisk", "cloudinitdisk"}
    assert condition(snap, "Ready")["status"] == "True" and condition(snap, "Progressing")["status"] == "False"
    # the agent froze once, then thawed (a thaw of a thawed guest is harmless and logged again: virt-snapshot
    # repeats Unfreeze while its cache still shows fsFreezeStatus frozen)
    lines = new_lines(hooks, guest.freeze_log())
    assert lines[:2] == ["freeze", "thaw"] and set(lines[2:]) <= {"thaw"}, lines
    assert not (stack.vmi_of().get("status") or {}).get("fsFreezeStatus")
    assert_unlocked(stack)

    content = stack.sget(CONTENTS, status["virtualMachineSnapshotContentName"])
    assert content["status"]["readyToUse"] is True and content["status"]["creationTime"]
    (backup,) = content["spec"]["volumeBackups"]
    assert backup["volumeName"] == "data" and backup["persistentVolumeClaim"]["metadata"]["name"] == CLAIM
    assert backup["volumeSnapshotName"] == f"vmsnapshot-{snap['metadata']['uid']}-volume-data"
    copy = stack.copy_path(backup["volumeSnapshotName"])
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(copy)], capture_output=True, text=True,
                          check=True).stdout
    assert '"format": "qcow2"' in info and '"virtual-size": 268435456' in info
    assert stack.partial_copies() == []
    reasons = stack.event_reasons("VirtualMachineSnapshot", "snap-online")
    assert "SuccessfulVirtualMachineSnapshotContentCreate" in reasons, reasons

    guest.write_data("v2")
    stack.stop_vm()
    done = restore_and_start(stack, "restore-online", "snap-online", "v1")
    assert condition(done, "Ready")["status"] == "True" and done["status"]["restoreTime"]
    (restored,) = done["status"]["restores"]
    claim_name = restored["persistentVolumeClaim"]
    assert claim_name == f"restore-{done['metadata']['uid']}-data"  # RandomizeNames (the default)
    assert restored["volumeSnapshotName"] == backup["volumeSnapshotName"]
    claim = stack.claim(claim_name)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                           "name": backup["volumeSnapshotName"]}
    vm = stack.vm_object()
    volumes = {v["name"]: v for v in vm["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim_name
    assert vm["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == \
        f"restore-online-{done['metadata']['uid']}"
    assert stack.claim(CLAIM)["status"]["phase"] == "Bound"  # the original claim stays


def test_2_restore_to_a_new_vm_runs_beside_the_original(stack: SnapStack):
    stack.create_restore("restore-copy", "snap-online", target=COPY_VM)
    done = stack.wait_restore_complete("restore-copy")
    copy_vm = stack.vm_object(COPY_VM)
    assert copy_vm is not None and copy_vm["spec"].get("runStrategy") == "Halted"  # KubeVirt: a new VM is halted
    (restored,) = done["status"]["restores"]
    original_claim = stack.vm_object()["spec"]["template"]["spec"]["volumes"]
    assert restored["persistentVolumeClaim"] not in str(original_claim)
    try:
        stack.start_vm(COPY_VM)
        copy_guest, guest = stack.guest(COPY_VM), stack.guest()
        assert copy_guest.read_data() == "v1"
        copy_guest.write_data("only-in-the-copy")
        assert guest.read_data() == "v1"  # independent disks
        assert copy_guest.read_data() == "only-in-the-copy"
        assert stack.vmi_of()["status"]["phase"] == stack.vmi_of(COPY_VM)["status"]["phase"] == "Running"
    finally:
        stack.api.delete_namespaced_custom_object("kubevirt.io", "v1", stack.namespace, "virtualmachines", COPY_VM)
        wait_for(lambda: stack.vmi_of(COPY_VM) is None and stack.vm_object(COPY_VM) is None, 120, 0.5,
                 what=f"{COPY_VM} deleted")


def test_3_snapshots_of_a_paused_and_of_a_stopped_vm_are_restorable(stack: SnapStack):
    guest = stack.guest()
    guest.write_data("at-pause")
    hooks = guest.freeze_log()
    stack.vctl("pause", "vm", VM)
    wait_for(lambda: (condition(stack.vmi_of(), "Paused") or {}).get("status") == "True", 60, 0.5,
             what="VMI Paused")
    stack.create_snapshot("snap-paused")
    status = stack.wait_snapshot_ready("snap-paused")["status"]
    assert {"Online", "Paused"} <= set(status["indications"]), status["indications"]
    assert not {"GuestAgent", "NoGuestAgent"} & set(status["indications"])
    assert_unlocked(stack)  # virt-api refuses unpause while a snapshot is in progress
    stack.vctl("unpause", "vm", VM)
    wait_for(lambda: (condition(stack.vmi_of(), "Paused") or {}).get("status") != "True", 60, 0.5,
             what="VMI unpaused")
    assert new_lines(hooks, guest.freeze_log()) == []  # no freeze of a paused guest

    guest.write_data("at-stop")
    stack.stop_vm()
    stack.create_snapshot("snap-stopped")
    status = stack.wait_snapshot_ready("snap-stopped")["status"]
    assert not {"Online", "Paused", "GuestAgent", "NoGuestAgent"} & set(status.get("indications") or [])

    restore_and_start(stack, "restore-paused", "snap-paused", "at-pause")
    stack.stop_vm()
    restore_and_start(stack, "restore-stopped", "snap-stopped", "at-stop")


def test_4_restore_onto_the_running_vm_follows_the_target_readiness_policy(stack: SnapStack):
    uid = stack.vmi_of()["metadata"]["uid"]
    stack.create_restore("restore-fail", "snap-online", targetReadinessPolicy="FailImmediate")

    def failed():  # KubeVirt writes the sentence as the conditions' reason
        restore = stack.sget(RESTORES, "restore-fail")
        failure = condition(restore, "Failure") or {}
        return restore if failure.get("status") == "True" and failure.get("reason") == TARGET_NOT_READY else None

    with stack.explained((RESTORES, "restore-fail")):
        restore = wait_for(failed, 60, 0.5, what="FailImmediate restore failed")
    assert restore["status"].get("complete") is False
    for kind in ("Ready", "Progressing"):
        assert (condition(restore, kind)["status"], condition(restore, kind)["reason"]) == ("False", TARGET_NOT_READY)
    assert "Operation failed" in stack.event_reasons("VirtualMachineRestore", "restore-fail")
    assert stack.vmi_of()["metadata"]["uid"] == uid and stack.vmi_of()["status"]["phase"] == "Running"
    assert stack.guest().read_data() == "at-stop"  # untouched
    stack.sdelete(RESTORES, "restore-fail")
    wait_for(lambda: stack.sget(RESTORES, "restore-fail") is None, 60, 0.5, what="failed restore deleted")

    stack.create_restore("restore-stop-target", "snap-online", targetReadinessPolicy="StopTarget")
    stack.wait_restore_complete("restore-stop-target")
    assert stack.vm_object()["spec"].get("runStrategy") == "Halted"
    assert stack.vmi_of() is None
    stack.start_vm()
    assert stack.guest().read_data() == "v1"


def test_5_a_freeze_that_never_answers_fails_at_the_deadline_and_the_guest_is_thawed(stack: SnapStack):
    guest = stack.guest()
    vmi_uid = stack.vmi_of()["metadata"]["uid"]
    guest.run("kill -STOP $(cat /run/qga.pid)")
    started = time.monotonic()
    try:
        stack.create_snapshot("snap-hang", failureDeadline="20s")

        def failed():
            status = snapshot_status(stack, "snap-hang")
            return status if status.get("phase") == "Failed" else None

        with stack.explained((SNAPSHOTS, "snap-hang")):
            status = wait_for(failed, 90, 0.5, what="snap-hang Failed")
        elapsed = time.monotonic() - started
        assert 15 <= elapsed <= 60, elapsed
        assert status["error"]["message"] == DEADLINE_EXCEEDED
        assert condition(stack.sget(SNAPSHOTS, "snap-hang"), "Failure") is not None
        content = status.get("virtualMachineSnapshotContentName")
        wait_for(lambda: content is None or stack.sget(CONTENTS, content) is None, 60, 0.5, what="content deleted")
        assert_unlocked(stack)
        assert stack.partial_copies() == []
        assert stack.vmi_of()["metadata"]["uid"] == vmi_uid and stack.vmi_of()["status"]["phase"] == "Running"
    finally:
        guest.run("kill -CONT $(cat /run/qga.pid)")

    conn = libvirt.open("qemu:///system")
    try:
        agent = AgentShell(conn.lookupByName(stack.domain))

        def thawed():
            vmi_status = stack.vmi_of()["status"]
            try:
                state = agent.agent("guest-fsfreeze-status")["return"]
            except libvirt.libvirtError:
                return False
            return state == "thawed" and not vmi_status.get("fsFreezeStatus")

        # a freeze queued while the agent was stopped may run on SIGCONT: the handler's thaw follows it
        wait_for(thawed, 90, 1, what="the guest thawed after SIGCONT")
        time.sleep(3)
        assert thawed(), "the guest froze again"
    finally:
        conn.close()
    assert stack.guest().run("echo after > /data/data1/probe && sync && cat /data/data1/probe") == "after\n"


def test_6_deletion_policy_delete_removes_the_content_and_its_copy_retain_keeps_them(stack: SnapStack):
    kept = {}
    for name, policy in (("snap-delete", "Delete"), ("snap-retain", "Retain")):
        stack.create_snapshot(name, deletionPolicy=policy)
        snap = stack.wait_snapshot_ready(name)
        content = snap["status"]["virtualMachineSnapshotContentName"]
        (backup,) = stack.sget(CONTENTS, content)["spec"]["volumeBackups"]
        copy = stack.copy_path(backup["volumeSnapshotName"])
        assert copy.exists()
        stack.sdelete(SNAPSHOTS, name)
        wait_for(lambda n=name: stack.sget(SNAPSHOTS, n) is None, 60, 0.5, what=f"{name} deleted")
        kept[policy] = (content, copy, snap["metadata"]["uid"])

    content, copy, _ = kept["Delete"]
    wait_for(lambda: stack.sget(CONTENTS, content) is None, 60, 0.5, what="Delete: content removed")
    wait_for(lambda: not copy.exists(), 60, 0.5, what="Delete: copy removed")

    content, copy, snap_uid = kept["Retain"]
    time.sleep(3)
    retained = stack.sget(CONTENTS, content)
    assert retained is not None and copy.exists()
    assert snap_uid not in [o.get("uid") for o in retained["metadata"].get("ownerReferences") or []]
    assert retained["status"]["readyToUse"] is True
    stack.sdelete(CONTENTS, content)  # deleting the kept content itself removes its copy
    wait_for(lambda: stack.sget(CONTENTS, content) is None and not copy.exists(), 60, 0.5,
             what="retained content and copy removed on its deletion")


def test_7_kill_9_of_virt_snapshot_between_freeze_and_thaw(stack: SnapStack):
    guest = stack.guest()
    vmi = stack.vmi_of()
    deadline_file = stack.vmi_dir(vmi["status"]["nodeName"], vmi["metadata"]["uid"]) / "freeze-deadline"
    guest.run("echo 8 > /run/fsfreeze-hold")  # the next freeze waits 8 s in the guest's hook
    stack.create_snapshot("snap-kill", failureDeadline="40s")
    with stack.explained((SNAPSHOTS, "snap-kill")):
        wait_for(deadline_file.exists, 60, 0.05, what=f"the handler's {deadline_file}")
    stack.kill9("virt-snapshot")  # Freeze is under way in the guest; nobody will send Unfreeze
    thaw_at = float(deadline_file.read_text())
    try:
        wait_for(lambda: (stack.vmi_of()["status"] or {}).get("fsFreezeStatus") == "frozen", 30, 0.2,
                 what="the guest frozen (status.fsFreezeStatus)")
        wait_for(lambda: not (stack.vmi_of()["status"] or {}).get("fsFreezeStatus"),
                 max(thaw_at - time.time(), 0) + 20, 0.5, what="thawed by the handler at the unfreeze deadline")
        assert time.time() <= thaw_at + 20
        assert not deadline_file.exists()
        assert stack.guest().freeze_log()[-3:] == ["freeze", "holding", "thaw"]
    finally:
        stack.restart("virt-snapshot")

    def final():
        status = snapshot_status(stack, "snap-kill")
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    with stack.explained((SNAPSHOTS, "snap-kill")):
        status = wait_for(final, 120, 0.5, what="snap-kill Succeeded or Failed")
    if status["phase"] == "Failed":
        assert status["error"]["message"] == DEADLINE_EXCEEDED
        content = status.get("virtualMachineSnapshotContentName")
        wait_for(lambda: content is None or stack.sget(CONTENTS, content) is None, 60, 0.5, what="content deleted")
    else:
        stack.wait_snapshot_ready("snap-kill")
    assert_unlocked(stack)
    wait_for(lambda: stack.partial_copies() == [], 60, 0.5, what="no partial copy left")
    assert stack.guest().run("echo ok > /data/data1/probe && sync && cat /data/data1/probe") == "ok\n"
