"""VMI phase and conditions from the libvirt domain, as KubeVirt's virt-handler computes them."""

from datetime import datetime, timezone

import pytest

from services.virt_handler.status import (
    compute_final_status,
    compute_live_status,
    compute_phase,
    compute_sync_failure_status,
    is_acpi_enabled,
    with_conditions,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 1, 12, 0, 5, tzinfo=timezone.utc)


def make_vmi(phase="Scheduled", conditions=None, acpi=None):
    vmi = {"metadata": {"name": "vm", "namespace": "default", "uid": "u1"},
           "spec": {"domain": {"devices": {}}},
           "status": {"phase": phase, "nodeName": "node1", "conditions": conditions or [],
                      "phaseTransitionTimestamps": [{"phase": phase, "phaseTransitionTimestamp": "t0"}]}}
    if acpi is not None:
        vmi["spec"]["domain"]["features"] = {"acpi": {"enabled": acpi}}
    return vmi


@pytest.mark.parametrize("state, reason, acpi, expected", [
    pytest.param("Running", "Booted", True, "Running", id="running"),
    pytest.param("Blocked", "Unknown", True, "Running", id="blocked-counts-as-running"),
    pytest.param("Paused", "User", True, "Running", id="paused-is-still-running"),
    pytest.param("Paused", "PostCopyFailed", True, "Failed", id="postcopy-failure"),
    pytest.param("PMSuspended", "Unknown", True, "Running", id="pmsuspended"),
    pytest.param("Shutoff", "Shutdown", True, "Succeeded", id="clean-guest-shutdown"),
    pytest.param("Shutoff", "Destroyed", True, "Failed", id="destroyed-with-acpi-is-failure"),
    pytest.param("Shutoff", "Destroyed", False, "Succeeded", id="destroyed-without-acpi-is-success"),
    pytest.param("Shutoff", "Crashed", True, "Failed", id="crash"),
    pytest.param("Crashed", "Panicked", True, "Failed", id="guest-panic"),
    pytest.param("Shutoff", "Failed", True, "Failed", id="failed-to-start"),
    pytest.param("Shutoff", "Saved", True, "Succeeded", id="saved"),
])
def test_phase_follows_kubevirt_rules(state, reason, acpi, expected):
    assert compute_phase(state, reason, acpi_enabled=acpi) == expected


@pytest.mark.parametrize("features, expected", [
    pytest.param(None, True, id="default-on"),
    pytest.param({}, True, id="empty-acpi-on"),
    pytest.param({"enabled": False}, False, id="disabled"),
])
def test_acpi_default(features, expected):
    vmi = make_vmi()
    if features is not None:
        vmi["spec"]["domain"]["features"] = {"acpi": features}
    assert is_acpi_enabled(vmi) is expected


def test_running_domain_sets_phase_ready_and_transition_timestamp():
    status = compute_live_status(make_vmi(), "Running", "Booted", now=NOW)
    assert status["phase"] == "Running"
    assert status["phaseTransitionTimestamps"][-1] == {"phase": "Running",
                                                       "phaseTransitionTimestamp": "2026-01-01T12:00:00.250000Z"}
    assert status["conditions"] == [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": "2026-01-01T12:00:00Z"}]
    assert status["nodeName"] == "node1"


def test_paused_domain_sets_paused_by_user_and_not_ready():
    running = make_vmi("Running")
    running["status"] = compute_live_status(running, "Running", "Booted", now=NOW)
    status = compute_live_status(running, "Paused", "User", now=LATER)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Paused"]["reason"] == "PausedByUser"
    assert by_type["Paused"]["message"] == "VMI was paused by user"
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert by_type["Ready"]["message"] == ('the status of pod readiness gate "kubevirt.io/virtual-machine-unpaused" '
                                           'is not "True", but False')  # KubeVirt's words
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T12:00:05Z"
    assert len(status["phaseTransitionTimestamps"]) == 1  # no new entry: still Running


def test_reapplying_the_same_facts_changes_nothing():
    vmi = make_vmi()
    vmi["status"] = compute_live_status(vmi, "Running", "Booted", now=NOW, agent_connected=True)
    again = compute_live_status(vmi, "Running", "Booted", now=LATER, agent_connected=True)
    assert again == vmi["status"]


def test_agent_connected_condition_comes_and_goes():
    vmi = make_vmi("Running")
    vmi["status"] = compute_live_status(vmi, "Running", "Booted", now=NOW, agent_connected=True)
    assert {c["type"] for c in vmi["status"]["conditions"]} == {"Ready", "AgentConnected"}
    status = compute_live_status(vmi, "Running", "Booted", now=LATER, agent_connected=False)
    assert {c["type"] for c in status["conditions"]} == {"Ready"}


def test_stopped_domain_gives_the_final_status():
    vmi = make_vmi("Running", conditions=[{"type": "Paused", "status": "True"}])
    status = compute_live_status(vmi, "Shutoff", "Shutdown", now=NOW)
    assert status["phase"] == "Succeeded"
    assert [c["type"] for c in status["conditions"]] == ["Ready"]
    assert status["conditions"][0]["reason"] == "GuestNotRunning"
    assert compute_final_status(vmi, "Failed", now=NOW)["phase"] == "Failed"


def test_sync_failure_is_a_condition_and_clears_once_running():
    vmi = make_vmi()
    vmi["status"] = compute_sync_failure_status(vmi, "ErrImagePull", "image not found", now=NOW)
    assert vmi["status"]["phase"] == "Scheduled"
    assert vmi["status"]["conditions"][0]["reason"] == "ErrImagePull"
    status = compute_live_status(vmi, "Running", "Booted", now=LATER)
    assert {c["type"] for c in status["conditions"]} == {"Ready"}


def test_with_conditions_keeps_unrelated_conditions_and_order():
    conditions = [{"type": "LiveMigratable", "status": "True"}, {"type": "Ready", "status": "False"}]
    out = with_conditions(conditions, {"Ready": {"type": "Ready", "status": "True"}, "Paused": None})
    assert out == [{"type": "LiveMigratable", "status": "True"}, {"type": "Ready", "status": "True"}]


def test_fs_freeze_status_is_written_while_frozen_and_removed_after():
    vmi = make_vmi()
    vmi["status"] = compute_live_status(vmi, "Running", "Booted", now=NOW, fs_freeze_status="frozen")
    assert vmi["status"]["fsFreezeStatus"] == "frozen"
    assert compute_live_status(vmi, "Running", "Booted", now=NOW, fs_freeze_status="frozen") == vmi["status"]
    thawed = compute_live_status(vmi, "Running", "Booted", now=LATER)
    assert "fsFreezeStatus" not in thawed
    assert "fsFreezeStatus" not in compute_final_status(vmi, "Failed", now=LATER)
