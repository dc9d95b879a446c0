"""Freeze/thaw decisions: the unfreeze deadline after a restart and at each sync, thaw retries,
``fsFreezeStatus`` and the answers of ``Freeze``/``Unfreeze`` (pure)."""

from __future__ import annotations

import pytest

from services.virt_handler.freeze_decision import (
    MIGRATING,
    NO_AGENT,
    NOT_RUNNING,
    PAUSED,
    ArmTimer,
    DropRecord,
    NoRecord,
    ThawNow,
    compute_agent_error,
    compute_deadline,
    compute_freeze_recovery,
    compute_freeze_refusal,
    compute_fs_freeze_status,
    compute_thaw_retry_delay,
)
from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError, HypervisorTimeout
from shared import events

NOW = 1_000_000.0


def test_the_deadline_is_the_timeout_after_the_request():
    assert compute_deadline(NOW, 300) == NOW + 300
    with pytest.raises(ValueError):
        compute_deadline(NOW, 0)


@pytest.mark.parametrize("deadline, active, expected", [
    pytest.param(None, True, NoRecord(), id="nothing-armed"),
    pytest.param(NOW - 1, True, ThawNow(), id="past-deadline-thaws-now"),
    pytest.param(NOW, True, ThawNow(), id="deadline-now-thaws"),
    pytest.param(NOW + 4.5, True, ArmTimer(delay=4.5), id="before-deadline-rearms"),
    pytest.param(NOW + 4.5, False, DropRecord(), id="domain-gone-drops"),
    pytest.param(NOW - 1, False, DropRecord(), id="domain-gone-after-deadline-drops"),
])
def test_recovery_of_a_recorded_deadline(deadline, active, expected):
    assert compute_freeze_recovery(deadline, NOW, active) == expected


@pytest.mark.parametrize("failures, delay", [(1, 1.0), (2, 2.0), (3, 5.0), (4, 10.0), (50, 10.0), (0, 1.0)])
def test_thaw_retries_back_off_to_ten_seconds(failures, delay):
    assert compute_thaw_retry_delay(failures) == delay


@pytest.mark.parametrize("deadline, status", [(None, None), (NOW + 1, "frozen"), (NOW, None), (NOW - 5, None)])
def test_fs_freeze_status_is_frozen_only_before_the_deadline(deadline, status):
    assert compute_fs_freeze_status(deadline, NOW) == status


def domain(state="Running"):
    return DomainInfo(name="default_vm1", uuid="x", state=state, reason="", uid="u1", domain_id=1)


FREEZE = events.Freeze(namespace="default", name="vm1", unfreeze_timeout_seconds=60)
UNFREEZE = events.Unfreeze(namespace="default", name="vm1")


@pytest.mark.parametrize("command, the_domain, running, agent, migrating, armed, expected", [
    pytest.param(FREEZE, None, True, True, False, False, (409, NOT_RUNNING), id="freeze-no-domain"),
    pytest.param(FREEZE, domain("Shutoff"), True, True, False, False, (409, NOT_RUNNING), id="freeze-shutoff"),
    pytest.param(FREEZE, domain(), False, True, False, False, (409, NOT_RUNNING), id="freeze-vmi-not-running"),
    pytest.param(FREEZE, domain("Paused"), True, True, False, False, (409, PAUSED), id="freeze-paused"),
    pytest.param(FREEZE, domain(), True, False, False, False, (409, NO_AGENT), id="freeze-no-agent"),
    pytest.param(FREEZE, domain(), True, True, True, False, (409, MIGRATING), id="freeze-migrating"),
    pytest.param(FREEZE, domain(), True, True, False, False, None, id="freeze-goes-ahead"),
    pytest.param(UNFREEZE, None, True, True, False, True, (409, NOT_RUNNING), id="unfreeze-no-domain"),
    pytest.param(UNFREEZE, domain(), True, False, False, False, (200, ""), id="unfreeze-nothing-to-thaw"),
    pytest.param(UNFREEZE, domain(), True, False, False, True, None, id="unfreeze-armed-without-agent-tries"),
    pytest.param(UNFREEZE, domain("Paused"), True, True, False, False, (409, PAUSED), id="unfreeze-paused"),
    pytest.param(UNFREEZE, domain("Paused"), True, True, False, True, (409, PAUSED), id="unfreeze-paused-armed"),
    pytest.param(UNFREEZE, domain("Paused"), True, False, False, False, (200, ""), id="unfreeze-paused-nothing-to-thaw"),
    pytest.param(UNFREEZE, domain(), True, True, True, False, None, id="unfreeze-while-migrating"),
])
def test_freeze_refusals(command, the_domain, running, agent, migrating, armed, expected):
    result = compute_freeze_refusal(command, the_domain, running, agent, migrating, armed)
    assert ((result.code, result.message) if result else None) == expected
    if result is not None and result.code == 409:
        assert result.reason == "Conflict"


@pytest.mark.parametrize("err, code", [
    pytest.param(HypervisorError("AgentUnresponsive", "Guest agent is not responding"), 500, id="agent-silent"),
    pytest.param(HypervisorTimeout("libvirt call blocking took longer than 30s"), 500, id="call-timeout"),
    pytest.param(HypervisorError("Failed", "guest-fsfreeze-freeze failed: Device or resource busy"), 500,
                 id="agent-error"),
    pytest.param(HypervisorError("OperationInvalid", "domain is not running"), 409, id="state-forbids"),
])
def test_agent_errors_keep_their_message(err, code):
    result = compute_agent_error(err)
    assert (result.code, result.message) == (code, err.message)
