"""compute_sync_action: one row per rule of the handler's sync (VMI, domain, node facts -> action)."""

from __future__ import annotations

import msgspec
import pytest

from services.virt_handler.hypervisor_types import DomainInfo
from services.virt_handler.sync_decision import (
    AdoptDomain,
    CleanUpFinal,
    FinishDomain,
    MarkFailed,
    NodeFacts,
    Nothing,
    RemoveStaleDomain,
    StartDomain,
    StopDomain,
    StopStep,
    WriteLiveStatus,
    compute_stop_step,
    compute_sync_action,
    is_acpi_on,
)
from shared.api.vmi import VirtualMachineInstance

NODE = "node1"
NOW = 1_000_000.0


def vmi(phase="Scheduled", uid="u1", *, deleting=False, grace=None, start_strategy=None, acpi=None):
    spec = {"domain": {"devices": {}}}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if start_strategy is not None:
        spec["startStrategy"] = start_strategy
    if acpi is not None:
        spec["domain"]["features"] = {"acpi": {"enabled": acpi}}
    meta = {"name": "vm1", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return msgspec.convert({"metadata": meta, "spec": spec, "status": {"phase": phase, "nodeName": NODE}},
                           VirtualMachineInstance)


def domain(state="Running", reason="Booted", uid="u1"):
    return DomainInfo(name="default_vm1", uuid="x", state=state, reason=reason, uid=uid, domain_id=1)


def facts(**kwargs):
    base = {"node_name": NODE, "now": NOW, "shutdown_poll_interval": 1.0, "guest_refresh_interval": 30.0}
    return NodeFacts(**{**base, **kwargs})


def step(grace, *, first, destroy, requeue, announce=True):
    return StopStep(grace_seconds=grace, record_start=NOW if first else None, send_acpi=first and grace > 0,
                    announce=first and grace > 0 and announce, destroy=destroy, requeue_after=requeue)


CASES = [
    # -- ownership and absence
    pytest.param(vmi("Running"), domain(), facts(domain_owned=False), Nothing(), id="foreign-domain-never-touched"),
    pytest.param(None, None, facts(), Nothing(), id="nothing-at-all"),
    pytest.param(vmi("Pending"), None, facts(), Nothing(), id="not-yet-scheduled-no-domain"),
    # -- start
    pytest.param(vmi("Scheduled"), None, facts(), StartDomain(paused=False), id="scheduled-starts"),
    pytest.param(vmi("Scheduled", start_strategy="Paused"), None, facts(), StartDomain(paused=True),
                 id="start-strategy-paused"),
    # -- no domain for a VMI that needs one
    pytest.param(vmi("Running"), None, facts(), MarkFailed(uid="u1", vanished=True), id="running-domain-vanished"),
    pytest.param(vmi("Unknown"), None, facts(), MarkFailed(uid="u1", vanished=True), id="unknown-domain-vanished"),
    pytest.param(vmi("Scheduled", deleting=True), None, facts(), MarkFailed(uid="u1", vanished=False),
                 id="deleted-before-it-ran"),
    # -- final VMIs
    pytest.param(vmi("Succeeded"), None, facts(vmi_files_exist=True), CleanUpFinal(domain_name=None, uid="u1"),
                 id="final-leftover-files"),
    pytest.param(vmi("Failed"), None, facts(vmi_files_exist=False), Nothing(), id="final-nothing-left"),
    pytest.param(vmi("Failed"), domain(), facts(vmi_files_exist=True),
                 CleanUpFinal(domain_name="default_vm1", uid="u1"), id="final-leftover-domain-and-files"),
    pytest.param(vmi("Succeeded"), domain(state="Shutoff", reason="Shutdown"), facts(vmi_files_exist=False),
                 CleanUpFinal(domain_name="default_vm1", uid=None), id="final-leftover-domain"),
    # -- deletion: ACPI first, destroy after the grace period
    pytest.param(vmi("Running", deleting=True, grace=30), domain(), facts(),
                 StopDomain("default_vm1", "u1", step(30, first=True, destroy=False, requeue=1.0)),
                 id="delete-sends-acpi"),
    pytest.param(vmi("Running", deleting=True, grace=30), domain(), facts(shutdown_started=NOW - 10),
                 StopDomain("default_vm1", "u1", step(30, first=False, destroy=False, requeue=1.0)),
                 id="delete-waits-within-grace"),
    pytest.param(vmi("Running", deleting=True, grace=30), domain(), facts(shutdown_started=NOW - 29.5),
                 StopDomain("default_vm1", "u1", step(30, first=False, destroy=False, requeue=0.5)),
                 id="delete-looks-again-at-grace-end"),
    pytest.param(vmi("Running", deleting=True, grace=30), domain(), facts(shutdown_started=NOW - 31),
                 StopDomain("default_vm1", "u1", step(30, first=False, destroy=True, requeue=None)),
                 id="delete-destroys-after-grace"),
    pytest.param(vmi("Running", deleting=True, grace=0), domain(), facts(),
                 StopDomain("default_vm1", "u1", step(0, first=True, destroy=True, requeue=None)),
                 id="delete-grace-zero-destroys-at-once"),
    pytest.param(vmi("Running", deleting=True), domain(), facts(),
                 StopDomain("default_vm1", "u1", step(180, first=True, destroy=False, requeue=1.0)),
                 id="delete-default-grace-180"),
    pytest.param(vmi("Running", deleting=True), domain(state="Shutoff", reason="Shutdown"), facts(),
                 FinishDomain("default_vm1", "u1", "Succeeded"), id="delete-guest-already-off"),
    # -- the guest stopped
    pytest.param(vmi("Running"), domain(state="Shutoff", reason="Shutdown"), facts(),
                 FinishDomain("default_vm1", "u1", "Succeeded"), id="guest-shutdown-succeeds"),
    pytest.param(vmi("Running"), domain(state="Shutoff", reason="Destroyed"), facts(),
                 FinishDomain("default_vm1", "u1", "Failed"), id="destroyed-with-acpi-fails"),
    pytest.param(vmi("Running", acpi=False), domain(state="Shutoff", reason="Destroyed"), facts(),
                 FinishDomain("default_vm1", "u1", "Succeeded"), id="destroyed-without-acpi-succeeds"),
    pytest.param(vmi("Running"), domain(state="Crashed", reason="Panicked"), facts(),
                 FinishDomain("default_vm1", "u1", "Failed"), id="crashed-fails"),
    # -- adoption and live status
    pytest.param(vmi("Running"), domain(), facts(agent_connected=None), AdoptDomain("default_vm1"),
                 id="adopted-domain-asks-agent"),
    pytest.param(vmi("Scheduled"), domain(), facts(agent_connected=False),
                 WriteLiveStatus("Running", "Booted", False, False, None), id="adopted-scheduled-becomes-running"),
    pytest.param(vmi("Running"), domain(), facts(agent_connected=False),
                 WriteLiveStatus("Running", "Booted", False, False, None), id="live-no-agent"),
    pytest.param(vmi("Running"), domain(), facts(agent_connected=True, guest_info_age=None),
                 WriteLiveStatus("Running", "Booted", True, True, 30.0), id="live-agent-first-fetch"),
    pytest.param(vmi("Running"), domain(), facts(agent_connected=True, guest_info_age=5.0),
                 WriteLiveStatus("Running", "Booted", True, False, 30.0), id="live-agent-fresh-info"),
    pytest.param(vmi("Running"), domain(), facts(agent_connected=True, guest_info_age=30.0),
                 WriteLiveStatus("Running", "Booted", True, True, 30.0), id="live-agent-stale-info"),
    pytest.param(vmi("Running"), domain(state="Paused", reason="User"), facts(agent_connected=True),
                 WriteLiveStatus("Paused", "User", True, False, None), id="paused-no-agent-fetch"),
    # -- stale domains (the VMI is gone or replaced)
    pytest.param(None, domain(state="Shutoff", reason="Shutdown"), facts(),
                 RemoveStaleDomain("default_vm1", "u1", None, Nothing()), id="stale-stopped-domain-removed"),
    pytest.param(None, domain(), facts(stale_owner=None),
                 RemoveStaleDomain("default_vm1", "u1", step(0, first=True, destroy=True, requeue=None), Nothing()),
                 id="stale-without-record-destroyed-at-once"),
    pytest.param(None, domain(), facts(stale_owner=vmi("Running", grace=60)),
                 RemoveStaleDomain("default_vm1", "u1", step(60, first=True, destroy=False, requeue=1.0), Nothing()),
                 id="stale-with-record-acpi-first"),
    pytest.param(None, domain(), facts(stale_owner=vmi("Running", grace=60), shutdown_started=NOW - 61),
                 RemoveStaleDomain("default_vm1", "u1", step(60, first=False, destroy=True, requeue=None), Nothing()),
                 id="stale-with-record-destroyed-after-grace"),
    pytest.param(vmi("Scheduled", uid="u2"), domain(uid="u1"), facts(),
                 RemoveStaleDomain("default_vm1", "u1", step(0, first=True, destroy=True, requeue=None),
                                   StartDomain(paused=False)), id="replaced-vmi-old-domain-then-start"),
    pytest.param(vmi("Succeeded", uid="u2"), domain(uid="u1", state="Shutoff", reason="Shutdown"),
                 facts(vmi_files_exist=True),
                 RemoveStaleDomain("default_vm1", "u1", None, CleanUpFinal(domain_name=None, uid="u2")),
                 id="replaced-final-vmi-then-clean"),
]


@pytest.mark.parametrize("the_vmi, the_domain, node, expected", CASES)
def test_sync_action(the_vmi, the_domain, node, expected):
    assert compute_sync_action(the_vmi, the_domain, node) == expected


@pytest.mark.parametrize("grace, started, expected", [
    pytest.param(10, None, StopStep(10, NOW, True, True, False, 1.0), id="first-look"),
    pytest.param(10, NOW - 9.75, StopStep(10, None, False, False, False, 0.25), id="almost-over"),
    pytest.param(10, NOW - 10, StopStep(10, None, False, False, True, None), id="over"),
    pytest.param(0, None, StopStep(0, NOW, False, False, True, None), id="no-grace"),
])
def test_stop_step(grace, started, expected):
    assert compute_stop_step(grace, started, NOW, 1.0, announce=True) == expected


@pytest.mark.parametrize("acpi, expected", [(None, True), (True, True), (False, False)])
def test_acpi_is_on_unless_disabled(acpi, expected):
    assert is_acpi_on(vmi(acpi=acpi)) is expected
