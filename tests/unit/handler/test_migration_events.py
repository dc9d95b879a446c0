"""compute_migration_events: which Events a handler's own migration write calls for (KubeVirt's
reasons and messages from pkg/virt-handler/migration-source.go and migration-target.go), and that a
write which changes nothing they describe calls for none."""

from __future__ import annotations

import pytest

from services.virt_handler.migration_events import MigrationEvent, compute_migration_events

A, B = "node-a", "node-b"
BASE = {"migrationUid": "m1", "sourceNode": A, "targetNode": B}

PREPARED = MigrationEvent("Normal", "PreparingTarget", "VirtualMachineInstance Migration Target Prepared.")
MIGRATING = MigrationEvent("Normal", "Migrating", "VirtualMachineInstance is migrating.")
ABORTING = MigrationEvent("Normal", "Migrating", "VirtualMachineInstance is aborting migration.")
MIGRATED_TO_B = MigrationEvent("Normal", "Migrated", "The VirtualMachineInstance migrated to node node-b.")


def vmi(node=A, **ms):
    state = {**BASE, **ms} if ms.get("migrationUid", "m1") else {}
    return {"metadata": {"name": "vm1", "uid": "u1"}, "status": {"nodeName": node, "migrationState": state}}


@pytest.mark.parametrize(("before", "after", "node", "expected"), [
    pytest.param(vmi(), vmi(targetNodeAddress="10.0.0.2"), B, [PREPARED], id="target-ready"),
    pytest.param(vmi(targetNodeAddress="10.0.0.2"), vmi(targetNodeAddress="10.0.0.2"), B, [],
                 id="target-ready-again"),
    pytest.param(vmi(), vmi(targetNodeAddress="10.0.0.2"), A, [], id="target-ready-seen-by-source"),
    pytest.param(vmi(targetNodeAddress="x"), vmi(targetNodeAddress="x", startTimestamp="t", mode="PreCopy"), A,
                 [MIGRATING], id="source-started"),
    pytest.param(vmi(startTimestamp="t"), vmi(startTimestamp="t", progress={"dataRemainingBytes": 1}), A, [],
                 id="progress"),
    pytest.param(vmi(startTimestamp="t"), vmi(startTimestamp="t", abortStatus="Aborting"), A, [ABORTING],
                 id="abort-sent"),
    pytest.param(vmi(abortStatus="Aborting"), vmi(abortStatus="Aborting"), A, [], id="abort-sent-again"),
    pytest.param(vmi(startTimestamp="t", abortStatus="Aborting"),
                 vmi(startTimestamp="t", abortStatus="Succeeded", completed=True, failed=True,
                     failureReason="Live migration aborted"), A,
                 [MigrationEvent("Warning", "Migrated",
                                 "VirtualMachineInstance migration uid m1 failed. reason:Live migration aborted")],
                 id="failed-after-abort"),
    pytest.param(vmi(startTimestamp="t", completed=True, failed=True, failureReason="x"),
                 vmi(startTimestamp="t", completed=True, failed=True, failureReason="x"), A, [], id="failed-again"),
    pytest.param(vmi(startTimestamp="t", completed=True), vmi(B, startTimestamp="t", completed=True), B,
                 [MIGRATED_TO_B], id="claimed"),
    pytest.param(vmi(B, completed=True), vmi(B, completed=True), B, [], id="claimed-again"),
    pytest.param(vmi(startTimestamp="t", completed=True), vmi(startTimestamp="t", completed=True), A, [],
                 id="source-completed"),
    pytest.param(vmi(migrationUid="", ), vmi(migrationUid=""), A, [], id="no-migration"),
    pytest.param({**vmi(targetNodeAddress="x"), "status": {"nodeName": A, "migrationState": {
        "migrationUid": "old", "targetNode": B, "targetNodeAddress": "x"}}}, vmi(targetNodeAddress="x"), B,
        [PREPARED], id="state-of-another-migration-before"),
    pytest.param(None, vmi(startTimestamp="t"), A, [MIGRATING], id="no-before"),
])
def test_events_follow_the_transition(before, after, node, expected):
    assert compute_migration_events(before, after, node) == expected


def test_failure_message_has_kubevirts_wording_without_a_reason():
    failed = vmi(completed=True, failed=True)
    assert compute_migration_events(vmi(), failed, A) == [
        MigrationEvent("Warning", "Migrated", "VirtualMachineInstance migration uid m1 failed. reason:")]
