"""Limits, one-migration-per-VMI, garbage collection, evacuation backoff, evacuation plans and
the VMI writes of virt-migration (pure modules)."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest

from migration_objects import NOW, ago, as_dict, make_vmi, make_vmim
from services.virt_migration.configuration import EffectiveMigration, MigrationOptions
from services.virt_migration.evacuation import compute_evacuation, compute_evacuation_vmim, is_drained, \
    is_non_evictable
from services.virt_migration.limits import MigrationCounts, MigrationLimits, WaitingMigration, compute_counts_for, \
    has_capacity
from services.virt_migration.siblings import compute_backoff_until, compute_garbage, has_earlier_active
from services.virt_migration.vmi_writes import compute_abort, compute_evacuation_mark, compute_finish, \
    compute_handoff


# -- limits ---------------------------------------------------------------------------------------------
def test_oldest_pending_first_within_both_limits():
    limits = MigrationLimits(cluster=5, per_node=2)
    waiting = [WaitingMigration(f"ns/m{i}", f"2026-03-01T11:00:{i:02d}Z", "a" if i < 8 else "b") for i in range(12)]
    seen = {w.key: compute_counts_for(w.key, ["a"], waiting, limits) for w in waiting}
    admitted = [k for k, c in seen.items() if has_capacity(c, limits)]
    # one running from a: one more from a (m0), then the first two from b
    assert admitted == ["ns/m0", "ns/m8", "ns/m9"]
    assert seen["ns/m1"] == MigrationCounts(cluster=2, source_node=2)
    assert seen["ns/m10"] == MigrationCounts(cluster=4, source_node=2)


def test_admissions_never_exceed_the_limits_in_any_order():
    rng = random.Random(7)
    limits = MigrationLimits(cluster=5, per_node=2)
    for _ in range(200):
        waiting = [WaitingMigration(f"ns/m{i}", f"2026-03-01T11:{rng.randrange(60):02d}:00Z", rng.choice("abc"))
                   for i in range(rng.randrange(1, 15))]
        running: list[str | None] = []
        for candidate in rng.sample(waiting, len(waiting)):  # decided one at a time, in any order
            counts = compute_counts_for(candidate.key, running, waiting, limits)
            if has_capacity(counts, limits):
                running.append(candidate.source_node)
                waiting = [w for w in waiting if w.key != candidate.key]
            assert len(running) <= 5
            assert all(running.count(n) <= 2 for n in "abc")


def test_a_key_not_waiting_raises():
    with pytest.raises(KeyError):
        compute_counts_for("ns/x", [], [], MigrationLimits())


# -- siblings -------------------------------------------------------------------------------------------
def test_earlier_active_by_creation_time_then_name():
    first = make_vmim("a", created="2026-03-01T11:00:00Z", phase="Running")
    second = make_vmim("b", created="2026-03-01T11:00:00Z")
    third = make_vmim("c", created="2026-03-01T11:00:05Z")
    assert not has_earlier_active(first, [first, second, third])
    assert has_earlier_active(second, [first, second, third])
    done = make_vmim("a", created="2026-03-01T11:00:00Z", phase="Succeeded")
    assert not has_earlier_active(second, [done, second])


def test_garbage_collection_keeps_the_newest_five_final_vmims():
    vmims = [make_vmim(f"m{i}", created=f"2026-03-01T11:00:{i:02d}Z", phase="Succeeded" if i % 2 else "Failed")
             for i in range(8)]
    vmims.append(make_vmim("running", created="2026-03-01T10:00:00Z", phase="Running"))
    vmims.append(make_vmim("going", created="2026-03-01T10:00:01Z", phase="Failed", deleting=True))
    assert [m.metadata.name for m in compute_garbage(vmims)] == ["m0", "m1", "m2"]
    assert compute_garbage(vmims[:5]) == []


EVAC = {"kubevirt.io/evacuationMigration": "node-a"}


@pytest.mark.parametrize("history, backoff", [
    ([], None),
    (["Failed"], 20),
    (["Failed", "Failed"], 40),
    (["Failed", "Failed", "Failed"], 80),
    (["Failed", "Succeeded", "Failed"], 20),   # counting stops at the last success
    (["Succeeded"], None),
])
def test_evacuation_backoff_doubles_per_consecutive_failure(history, backoff):
    # history newest first; each older VMIM failed 5 s before NOW
    older = [make_vmim(f"old{i}", created=f"2026-03-01T10:{59 - i:02d}:00Z", phase=p, annotations=EVAC,
                       stamps=[(p, ago(5))]) for i, p in enumerate(history)]
    vmim = make_vmim("new", created="2026-03-01T11:00:00Z", phase="Pending", annotations=EVAC)
    until = compute_backoff_until(vmim, [vmim, *older])
    if backoff is None:
        assert until is None
    else:
        assert until == NOW - timedelta(seconds=5) + timedelta(seconds=backoff)


def test_no_backoff_for_user_migrations_or_an_older_evacuation_vmim():
    failed = make_vmim("old", created="2026-03-01T10:00:00Z", phase="Failed", annotations=EVAC,
                       stamps=[("Failed", ago(1))])
    user = make_vmim("user", created="2026-03-01T11:00:00Z")
    assert compute_backoff_until(user, [user, failed]) is None
    newer = make_vmim("newer", created="2026-03-01T12:00:00Z", annotations=EVAC)
    middle = make_vmim("mid", created="2026-03-01T11:00:00Z", annotations=EVAC)
    assert compute_backoff_until(middle, [failed, middle, newer]) is None


# -- evacuation -----------------------------------------------------------------------------------------
def node(taints):
    return {"metadata": {"name": "node-a"}, "spec": {"taints": taints}}


def test_a_node_is_drained_by_the_configured_taint_key_with_any_effect():
    assert is_drained(node([{"key": "kubevirt.io/drain", "effect": "NoSchedule"}]), "kubevirt.io/drain")
    assert is_drained(node([{"key": "kubevirt.io/drain", "effect": "NoExecute"}]), "kubevirt.io/drain")
    assert not is_drained(node([{"key": "other", "effect": "NoSchedule"}]), "kubevirt.io/drain")
    assert not is_drained(node(None), "kubevirt.io/drain")
    assert is_drained(node([{"key": "x/drain", "effect": "NoSchedule"}]), "x/drain")


def test_evacuation_plan_by_eviction_strategy():
    vmis = [
        make_vmi("live", eviction="LiveMigrate"),
        make_vmi("stuck", eviction="LiveMigrate", migratable=False),
        make_vmi("unknown", eviction="LiveMigrate", migratable=None),
        make_vmi("maybe", eviction="LiveMigrateIfPossible", migratable=False),
        make_vmi("maybe-yes", eviction="LiveMigrateIfPossible"),
        make_vmi("external", eviction="External"),
        make_vmi("none", eviction="None"),
        make_vmi("default"),  # cluster strategy
        make_vmi("moving", eviction="LiveMigrate", evacuation="node-a"),
        make_vmi("stopping", eviction="LiveMigrate", deleting=True),
        make_vmi("elsewhere", eviction="LiveMigrate", node="node-b"),
    ]
    plan = compute_evacuation("node-a", vmis, {"default/moving"}, "LiveMigrate")
    assert [v.metadata.name for v in plan.mark] == ["live", "maybe-yes", "external", "default"]
    assert [v.metadata.name for v in plan.migrate] == ["live", "maybe-yes", "default"]
    assert [v.metadata.name for v in plan.blocked] == ["stuck", "unknown"]
    assert compute_evacuation("node-a", [make_vmi("default")], set(), None).migrate == []


def test_non_evictable_is_live_migrate_without_live_migratable_true():
    assert is_non_evictable(make_vmi(eviction="LiveMigrate", migratable=False), None)
    assert is_non_evictable(make_vmi(migratable=None), "LiveMigrate")
    assert not is_non_evictable(make_vmi(eviction="LiveMigrate"), None)
    assert not is_non_evictable(make_vmi(eviction="LiveMigrateIfPossible", migratable=False), None)
    assert not is_non_evictable(make_vmi(migratable=False), None)


def test_the_evacuation_vmim():
    body = as_dict(compute_evacuation_vmim(make_vmi("vm7"), "node-a"))
    assert body["metadata"] == {"generateName": "kubevirt-evacuation-", "namespace": "default",
                                "labels": {"kubevirt.io/vmi-name": "vm7"},
                                "annotations": {"kubevirt.io/evacuationMigration": "node-a"},
                                "finalizers": ["kubevirt.io/migrationJobFinalize"]}
    assert body["spec"] == {"vmiName": "vm7", "priority": "system-critical"}


# -- VMI writes -----------------------------------------------------------------------------------------
def test_hand_off_writes_state_label_and_trace():
    effective = EffectiveMigration(MigrationOptions(max_downtime_ms=300), policy_name="fast")
    old = {"migrationUid": "uid-old", "completed": True, "targetNode": "node-c", "endTimestamp": "t"}
    vmi = make_vmi(state=old, labels={"app": "x"})
    out = as_dict(compute_handoff(vmi, "uid-mig", "node-b", effective, "00-" + "a" * 32 + "-" + "b" * 16 + "-01"))
    assert out["status"]["migrationState"] == {
        "migrationUid": "uid-mig", "sourceNode": "node-a", "targetNode": "node-b", "migrationPolicyName": "fast",
        "migrationConfiguration": {**MigrationOptions(max_downtime_ms=300).to_configuration()}}
    assert out["metadata"]["labels"] == {"app": "x", "kubevirt.io/migrationTargetNodeName": "node-b"}
    assert out["metadata"]["annotations"]["kubevirt-py.io/migration-traceparent"].startswith("00-aaaa")
    # the migration becomes the VMI's latest operation: its own trace annotations follow
    assert out["metadata"]["annotations"]["kubevirt-py.io/traceparent"].startswith("00-aaaa")
    assert out["metadata"]["annotations"]["kubevirt-py.io/trace-id"] == "a" * 32
    assert compute_handoff(make_vmi(state={"migrationUid": "uid-mig"}), "uid-mig", "node-b", effective, None) is None
    assert compute_handoff(make_vmi(state={"migrationUid": "x"}), "uid-mig", "node-b", effective, None) is None


def test_abort_before_the_start_ends_the_migration_and_after_it_only_asks():
    handed = {"migrationUid": "uid-mig", "targetNode": "node-b", "targetNodeAddress": "127.0.0.1"}
    early = as_dict(compute_abort(make_vmi(state=handed), "uid-mig", NOW))["status"]["migrationState"]
    assert early == {**handed, "abortRequested": True, "abortStatus": "Succeeded", "completed": True,
                     "failed": True, "endTimestamp": "2026-03-01T12:00:00Z",
                     "failureReason": "Migration aborted before the source started it"}
    started = {**handed, "startTimestamp": "s"}
    late = as_dict(compute_abort(make_vmi(state=started), "uid-mig", NOW))["status"]["migrationState"]
    assert late == {**started, "abortRequested": True}
    assert compute_abort(make_vmi(state={**started, "abortRequested": True}), "uid-mig", NOW) is None
    assert compute_abort(make_vmi(state=started), "uid-other", NOW) is None
    assert compute_abort(make_vmi(state={**started, "completed": True}), "uid-mig", NOW) is None


def test_finish_removes_the_label_and_a_left_evacuation():
    state = {"migrationUid": "uid-mig", "sourceNode": "node-a", "targetNode": "node-b", "completed": True}
    vmi = make_vmi(node="node-b", state=state, evacuation="node-a",
                   labels={"kubevirt.io/migrationTargetNodeName": "node-b", "app": "x"})
    out = as_dict(compute_finish(vmi, "uid-mig", succeeded=True))
    assert out["metadata"]["labels"] == {"app": "x"} and "evacuationNodeName" not in out["status"]
    failed = as_dict(compute_finish(vmi, "uid-mig", succeeded=False))
    assert failed["status"]["evacuationNodeName"] == "node-a"
    assert compute_finish(make_vmi(state=state), "uid-mig", succeeded=False) is None
    assert compute_finish(vmi, "uid-other", succeeded=True) is None


def test_evacuation_mark():
    assert as_dict(compute_evacuation_mark(make_vmi(), "node-a"))["status"]["evacuationNodeName"] == "node-a"
    assert compute_evacuation_mark(make_vmi(evacuation="node-a"), "node-a") is None
