"""compute_migration_action: one row per rule of the source, target and former roles, including
every crash-recovery row of the design (a restarted source or target in each phase), and the
sync decision's migration guard."""

from __future__ import annotations

import msgspec
import pytest

from services.virt_handler.hypervisor_types import DomainInfo
from services.virt_handler.migration_decision import (
    ABORTED_BEFORE_START,
    INTERRUPTED,
    ClaimOwnership,
    CleanUpFormer,
    CleanUpTarget,
    MigrationFacts,
    NoMigrationWork,
    PrepareTarget,
    ResumeSourceMonitor,
    StartSource,
    WaitMigration,
    WriteSourceOutcome,
    compute_migration_action,
    compute_role,
    is_moving_away,
)
from services.virt_handler.sync_decision import MarkFailed, NodeFacts, Nothing, compute_sync_action
from shared.api.vmi import VirtualMachineInstance

A, B = "node-a", "node-b"


def vmi(node=A, **ms):
    state = {"migrationUid": "m1", "sourceNode": A, "targetNode": B, **ms} if ms is not None else None
    if ms.get("_none"):
        state = None
    return msgspec.convert({"metadata": {"name": "vm1", "namespace": "default", "uid": "u1"},
                            "spec": {"domain": {"devices": {}}},
                            "status": {"phase": "Running", "nodeName": node, "migrationState": state}},
                           VirtualMachineInstance)


def dom(state="Running", reason="Booted", uid="u1"):
    return DomainInfo(name="default_vm1", uuid="x", state=state, reason=reason, uid=uid, domain_id=1)


def src(**kw):
    return MigrationFacts(node_name=A, files_exist=True, **kw)


def tgt(**kw):
    return MigrationFacts(node_name=B, **kw)


READY = {"targetNodeAddress": "127.0.0.1"}
STARTED = {**READY, "startTimestamp": "2026-01-01T00:00:00Z", "mode": "PreCopy"}
SUCCEEDED = {**STARTED, "completed": True, "endTimestamp": "2026-01-01T00:00:05Z"}
FAILED = {**SUCCEEDED, "failed": True, "failureReason": "x"}

SOURCE_ROWS = [
    # (case, migrationState, domain, facts, expected)
    ("no hand-off", {"_none": True}, dom(), src(), NoMigrationWork()),
    ("handed off, target not ready", {}, dom(), src(), NoMigrationWork()),
    ("target ready: start", READY, dom(), src(), StartSource()),
    ("target ready but domain stopped: normal sync", READY, dom("Shutoff", "Shutdown"), src(), NoMigrationWork()),
    ("abort before start", {**READY, "abortRequested": True}, dom(), src(),
     WriteSourceOutcome(False, ABORTED_BEFORE_START, "Succeeded")),
    ("abort before the target was ready", {"abortRequested": True}, dom(), src(),
     WriteSourceOutcome(False, ABORTED_BEFORE_START, "Succeeded")),
    ("transfer running here: guarded normal sync", STARTED, dom(), src(runner_active=True), NoMigrationWork()),
    ("restarted source, no domain: libvirt removed it on success", STARTED, None, src(),
     WriteSourceOutcome(True)),
    ("restarted source, domain shut off by the migration", STARTED, dom("Shutoff", "Migrated"), src(),
     WriteSourceOutcome(True)),
    ("restarted source, job still running: follow it", STARTED, dom(), src(job_active=True), ResumeSourceMonitor()),
    ("restarted source, domain and no job: interrupted", STARTED, dom(), src(),
     WriteSourceOutcome(False, INTERRUPTED)),
    ("restarted source, abort requested, domain and no job", {**STARTED, "abortRequested": True}, dom(), src(),
     WriteSourceOutcome(False, INTERRUPTED, "Succeeded")),
    ("restarted source, abort requested but it completed", {**STARTED, "abortRequested": True}, None, src(),
     WriteSourceOutcome(True, None, "Failed")),
    ("restarted stand-in source during the delay", STARTED, dom(), src(stand_in=True),
     WriteSourceOutcome(False, INTERRUPTED)),
    ("succeeded, waiting for the target's claim (no domain)", SUCCEEDED, None, src(), WaitMigration()),
    ("restarted source after completion", SUCCEEDED, None, src(), WaitMigration()),
    ("failed: the guest runs here, normal sync", FAILED, dom(), src(), NoMigrationWork()),
]


@pytest.mark.parametrize("case,ms,domain,facts,expected", SOURCE_ROWS, ids=[r[0] for r in SOURCE_ROWS])
def test_source_rules(case, ms, domain, facts, expected):
    assert compute_role(vmi(**ms), A) in ("source", "owner")
    assert compute_migration_action(vmi(**ms), domain, facts) == expected


TARGET_ROWS = [
    ("hand-off seen: prepare (real)", {}, None, tgt(), PrepareTarget(define_paused=False)),
    ("hand-off seen: prepare (stand-in)", {}, None, tgt(stand_in=True), PrepareTarget(define_paused=True)),
    ("restarted target, ready, files kept", READY, None, tgt(files_exist=True, incoming=True), WaitMigration(None)),
    ("restarted target, ready, files lost before start", READY, None, tgt(), PrepareTarget(define_paused=False)),
    ("restarted stand-in target, incoming domain lost before start", READY, None,
     tgt(stand_in=True, files_exist=True, incoming=True), PrepareTarget(define_paused=True)),
    ("stand-in ready with its paused domain", READY, dom("Paused", "User"),
     tgt(stand_in=True, files_exist=True, incoming=True), WaitMigration(None)),
    ("real transfer: incoming domain paused", STARTED, dom("Paused", "Migration"),
     tgt(files_exist=True, incoming=True), WaitMigration(None)),
    ("real transfer: no incoming domain yet", STARTED, None, tgt(files_exist=True, incoming=True),
     WaitMigration(None)),
    ("real: domain resumed by libvirt = success", STARTED, dom("Running", "Migrated"),
     tgt(files_exist=True, incoming=True), ClaimOwnership(resume=False)),
    ("post-copy: running but not done", STARTED, dom("Running", "PostCopy"), tgt(files_exist=True, incoming=True),
     WaitMigration(None)),
    ("stand-in running paused domain is not success", STARTED, dom("Paused", "User"),
     tgt(stand_in=True, files_exist=True, incoming=True), WaitMigration(None)),
    ("source reported success: claim (real)", SUCCEEDED, dom("Running", "Migrated"), tgt(files_exist=True),
     ClaimOwnership(resume=False)),
    ("source reported success: resume and claim (stand-in)", SUCCEEDED, dom("Paused", "User"),
     tgt(stand_in=True, files_exist=True, incoming=True), ClaimOwnership(resume=True)),
    ("restarted target after the source completed", SUCCEEDED, dom("Running", "Migrated"),
     tgt(files_exist=True, incoming=True), ClaimOwnership(resume=False)),
    ("failed: remove the incoming domain and files", FAILED, dom("Paused", "User"),
     tgt(stand_in=True, files_exist=True, incoming=True), CleanUpTarget(domain_name="default_vm1", uid="u1")),
    ("failed: libvirt already removed the domain", FAILED, None, tgt(files_exist=True, incoming=True),
     CleanUpTarget(domain_name=None, uid="u1")),
    ("failed and nothing left", FAILED, None, tgt(), WaitMigration(None)),
    ("abort before start: nothing to prepare", {"abortRequested": True}, None, tgt(), WaitMigration(None)),
    ("another VMI's domain is not ours", STARTED, dom("Running", "Migrated", uid="other"),
     tgt(files_exist=True, incoming=True), WaitMigration(None)),
]


@pytest.mark.parametrize("case,ms,domain,facts,expected", TARGET_ROWS, ids=[r[0] for r in TARGET_ROWS])
def test_target_rules(case, ms, domain, facts, expected):
    assert compute_role(vmi(**ms), B) == "target"
    assert compute_migration_action(vmi(**ms), domain, facts) == expected


FORMER_ROWS = [
    ("source after the claim: files only", None, src(), CleanUpFormer(None, False, "u1")),
    ("source's shut-off leftover is undefined", dom("Shutoff", "Migrated"), src(),
     CleanUpFormer("default_vm1", False, "u1")),
    ("a running guest is never destroyed", dom(), src(), WaitMigration(None)),
    ("a stale paused incoming domain is removed", dom("Paused", "User"), src(incoming=True),
     CleanUpFormer("default_vm1", True, "u1")),
]


@pytest.mark.parametrize("case,domain,facts,expected", FORMER_ROWS, ids=[r[0] for r in FORMER_ROWS])
def test_former_rules(case, domain, facts, expected):
    moved = vmi(node=B, **SUCCEEDED)
    assert compute_role(moved, A, files_exist=True) == "former"
    assert compute_migration_action(moved, domain, facts) == expected


def test_roles():
    assert compute_role(vmi(_none=True), A) == "owner"
    assert compute_role(vmi(_none=True), B) == "none"
    assert compute_role(vmi(node=B, **SUCCEEDED), B) == "owner"  # after the claim
    assert compute_role(vmi(node=B, **SUCCEEDED), A) == "none"  # files gone: out of view


GUARD_ROWS = [
    ("started, domain gone", STARTED, None, True),
    ("started, domain shut off by the migration", STARTED, dom("Shutoff", "Migrated"), True),
    ("succeeded, not claimed yet", SUCCEEDED, None, True),
    ("failed", FAILED, None, False),
    ("not started", READY, None, False),
]


@pytest.mark.parametrize("case,ms,domain,guarded", GUARD_ROWS, ids=[r[0] for r in GUARD_ROWS])
def test_sync_decision_never_fails_a_migrating_vmi(case, ms, domain, guarded):
    subject = vmi(**ms)
    assert is_moving_away(subject, A) is guarded
    action = compute_sync_action(subject, domain, NodeFacts(node_name=A))
    if guarded:
        assert action == Nothing(requeue_after=1.0)
    elif domain is None:
        assert action == MarkFailed(uid="u1", vanished=True)
