"""The Jepsen-style history checker on hand-made histories (pure)."""
import pytest

from history_check import FinalState, Guest, Instance, Operation, check_history, compute_possible_states


def op(kind, value, outcome="ok", key="vm"):
    return Operation(key=key, kind=kind, value=value, outcome=outcome)


@pytest.mark.parametrize(
    ("ops", "possible"),
    [
        pytest.param([], {None}, id="nothing"),
        pytest.param([op("create", "a")], {"a"}, id="created"),
        pytest.param([op("create", "a"), op("update", "b", "fail")], {"a"}, id="failed-update-changes-nothing"),
        pytest.param([op("create", "a"), op("update", "b", "info")], {"a", "b"}, id="indeterminate-update"),
        pytest.param([op("create", "a"), op("update", "b", "info"), op("update", "c")], {"c"},
                     id="ack-after-indeterminate"),
        pytest.param([op("create", "a"), op("delete", None)], {None}, id="deleted"),
        pytest.param([op("create", "a"), op("delete", None, "info")], {"a", None}, id="indeterminate-delete"),
        pytest.param([op("create", "a", "info")], {None, "a"}, id="indeterminate-create"),
    ],
)
def test_possible_states(ops, possible):
    assert compute_possible_states(ops) == possible


def test_a_valid_history():
    history = [op("create", "a"), op("update", "b"), op("update", "c", "info"), op("create", "x", key="gone"),
               op("delete", None, key="gone")]
    final = FinalState(values={"vm": "c"}, instances=[Instance("vm", "u1", "Running")],
                       guests=[Guest("vm", "n1", "u1", True), Guest("vm", "n2", "u0", False)])
    verdict = check_history(history, final)
    assert verdict.valid and (verdict.acknowledged, verdict.indeterminate) == (4, 1)


@pytest.mark.parametrize(
    ("history", "values", "field", "line"),
    [
        pytest.param([op("create", "a"), op("update", "b")], {"vm": "a"}, "lost",
                     "vm: acknowledged 'b', found 'a'", id="update-lost"),
        pytest.param([op("create", "a")], {}, "lost", "vm: acknowledged 'a', found None", id="object-lost"),
        pytest.param([op("create", "a"), op("delete", None)], {"vm": "a"}, "resurrected",
                     "vm: deleted (or never written), but present with 'a'", id="deleted-back"),
        pytest.param([], {"vm": "z"}, "resurrected", "vm: deleted (or never written), but present with 'z'",
                     id="never-written"),
        pytest.param([op("create", "a"), op("update", "b", "fail")], {"vm": "b"}, "failed_applied",
                     "vm: a failed write is applied ('b')", id="failed-applied"),
    ],
)
def test_anomalies(history, values, field, line):
    verdict = check_history(history, FinalState(values=values))
    assert not verdict.valid
    assert getattr(verdict, field) == [line]


@pytest.mark.parametrize(
    ("instances", "guests", "line"),
    [
        pytest.param([Instance("vm", "u1", "Running")], [Guest("vm", "n1", "u1", True), Guest("vm", "n2", "u1", True)],
                     "vm: 2 running guests (n1:u1, n2:u1)", id="guest-on-two-nodes"),
        pytest.param([Instance("vm", "u2", "Running")], [Guest("vm", "n1", "u1", True)],
                     "vm: a running guest of no current VMI (n1:u1)", id="old-guest-still-running"),
        pytest.param([Instance("vm", "u1", "Running"), Instance("vm", "u2", "Running")], [],
                     "vm: 2 VMIs (u1, u2)", id="two-vmis"),
    ],
)
def test_duplicates(instances, guests, line):
    verdict = check_history([op("create", "a")], FinalState(values={"vm": "a"}, instances=instances, guests=guests))
    assert verdict.duplicates[0] == line


def test_a_vmi_of_a_deleted_vm_is_a_deleted_object_back():
    verdict = check_history([op("create", "a"), op("delete", None)],
                            FinalState(values={}, instances=[Instance("vm", "u1", "Running")]))
    assert verdict.resurrected == ["vm: VMI u1 of an absent VM"]
