"""The command server's rules: 404 not here, 409 state forbids it, libvirt errors (pure)."""

from __future__ import annotations

import msgspec
import pytest

from services.virt_handler.commands import (
    NO_AGENT,
    compute_command_error,
    compute_command_not_here,
    compute_command_refusal,
)
from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError
from shared import events
from shared.api.vmi import VirtualMachineInstance


def vmi(phase="Running", uid="u1"):
    return msgspec.convert({"metadata": {"name": "vm1", "namespace": "default", "uid": uid},
                            "spec": {"domain": {}}, "status": {"phase": phase}}, VirtualMachineInstance)


def domain(state="Running"):
    return DomainInfo(name="default_vm1", uuid="x", state=state, reason="", uid="u1", domain_id=1)


@pytest.mark.parametrize("command, the_vmi, expected", [
    pytest.param(events.Pause(namespace="default", name="vm1"), None, 404, id="not-on-this-node"),
    pytest.param(events.Pause(namespace="default", name="vm1", uid="other"), vmi(), 404, id="other-uid"),
    pytest.param(events.Pause(namespace="default", name="vm1", uid="u1"), vmi(), None, id="same-uid"),
    pytest.param(events.Pause(namespace="default", name="vm1"), vmi(), None, id="any-uid"),
])
def test_not_here(command, the_vmi, expected):
    result = compute_command_not_here(command, the_vmi, "node1")
    assert (result.code if result else None) == expected
    if result:
        assert result.message == "VMI default/vm1 is not running on node node1"


@pytest.mark.parametrize("command, the_vmi, the_domain, agent, expected", [
    pytest.param(events.Pause(namespace="d", name="v"), vmi(), None, False, "VMI is not running", id="no-domain"),
    pytest.param(events.Pause(namespace="d", name="v"), vmi(), domain("Shutoff"), False, "VMI is not running",
                 id="domain-off"),
    pytest.param(events.Pause(namespace="d", name="v"), vmi("Scheduled"), domain(), False, "VMI is not running",
                 id="vmi-not-running"),
    pytest.param(events.Pause(namespace="d", name="v"), vmi(), domain(), False, None, id="pause-ok"),
    pytest.param(events.Unpause(namespace="d", name="v"), vmi(), domain("Paused"), False, None, id="unpause-ok"),
    pytest.param(events.SoftReboot(namespace="d", name="v"), vmi(), domain("Paused"), False, "VMI is paused",
                 id="softreboot-paused"),
    pytest.param(events.SoftReboot(namespace="d", name="v"), vmi(), domain(), False, None, id="softreboot-ok"),
    pytest.param(events.GuestOSInfo(namespace="d", name="v"), vmi(), domain(), False, NO_AGENT,
                 id="guestosinfo-no-agent"),
    pytest.param(events.GuestOSInfo(namespace="d", name="v"), vmi(), domain(), True, None, id="guestosinfo-ok"),
])
def test_refusal(command, the_vmi, the_domain, agent, expected):
    result = compute_command_refusal(command, the_vmi, the_domain, agent)
    assert (result.message if result else None) == expected
    if result:
        assert (result.code, result.reason) == (409, "Conflict")


@pytest.mark.parametrize("reason, code, status_reason", [
    ("OperationInvalid", 409, "Conflict"), ("Failed", 500, "InternalError"), ("Timeout", 500, "InternalError")])
def test_libvirt_errors(reason, code, status_reason):
    result = compute_command_error(HypervisorError(reason, "boom"))
    assert (result.code, result.reason, result.message) == (code, status_reason, "boom")
