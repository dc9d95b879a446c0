"""virt-controller and virt-snapshot's VM status fields: ``snapshotInProgress``/``restoreInProgress``
are kept by every VM status the controller computes, and a VM whose restore is in progress is not
started (services.virt_controller.run_strategy.compute_restore_hold)."""

from datetime import datetime, timezone

import pytest

from controller_objects import as_dict, vm as typed_vm, vm_status, vmi as typed_vmi
from services.virt_controller.run_strategy import (
    RunStrategyAction,
    compute_restore_hold,
    compute_run_strategy_action,
)
from services.virt_controller.vm_status import compute_vm_status

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LOCKS = {"snapshotInProgress": "snap1", "restoreInProgress": "restore1"}


def running_vmi(phase="Running"):
    return typed_vmi({"metadata": {"uid": "u1", "name": "vm"}, "status": {"phase": phase}})


HOLD = [
    # (id, strategy, status, vmi, expected action)
    ("Always without VMI: no create while restoring", "Always", {"restoreInProgress": "r1"}, None,
     RunStrategyAction()),
    ("Always without VMI, no restore: create", "Always", {}, None, RunStrategyAction(create=True)),
    ("snapshot lock alone does not hold a start", "Always", {"snapshotInProgress": "s1"}, None,
     RunStrategyAction(create=True)),
    ("Manual start request held", "Manual",
     {"restoreInProgress": "r1", "stateChangeRequests": [{"action": "Start"}]}, None, RunStrategyAction()),
    ("Halted start request: no switch to Always", "Halted",
     {"restoreInProgress": "r1", "stateChangeRequests": [{"action": "Start"}]}, None, RunStrategyAction()),
    ("Halted with a VMI: still stopped", "Halted", {"restoreInProgress": "r1"}, running_vmi(),
     RunStrategyAction(delete=True)),
    ("Once without VMI held", "Once", {"restoreInProgress": "r1"}, None, RunStrategyAction()),
    ("RerunOnFailure failed VMI: deleted, start request kept", "RerunOnFailure", {"restoreInProgress": "r1"},
     running_vmi("Failed"), RunStrategyAction(delete=True, add_start_request=True)),
]


@pytest.mark.parametrize(("strategy", "status", "vmi", "expected"), [c[1:] for c in HOLD], ids=[c[0] for c in HOLD])
def test_restore_in_progress_holds_the_start(strategy, status, vmi, expected):
    typed = vm_status(status)
    assert compute_restore_hold(compute_run_strategy_action(strategy, typed, vmi, NOW), typed) == expected


def test_no_status_is_no_hold():
    assert compute_restore_hold(RunStrategyAction(create=True), None) == RunStrategyAction(create=True)


@pytest.mark.parametrize(("strategy", "vmi"), [("Always", running_vmi()), ("Halted", None),
                                                ("Manual", running_vmi("Succeeded"))])
def test_vm_status_keeps_the_snapshot_and_restore_locks(strategy, vmi):
    vm = typed_vm({"metadata": {"name": "vm", "namespace": "default", "generation": 2}, "spec": {}})
    status = as_dict(compute_vm_status(vm, vmi, strategy, vm_status(dict(LOCKS)), None, "2026-01-02T03:04:05Z"))
    assert status["snapshotInProgress"] == "snap1"
    assert status["restoreInProgress"] == "restore1"
