"""Freeze and thaw decisions (pure): which ``Freeze``/``Unfreeze`` may run, what a recorded
unfreeze deadline means on start-up and at each sync, how a thaw is retried, and the VMI's
``status.fsFreezeStatus``.

KubeVirt's rules (``pkg/virt-launcher/virtwrap/storage/fsfreeze.go``, ``pkg/virt-api/rest``):
a freeze needs a running, unpaused VMI with a connected guest agent and no migration in flight
("failed to freeze VMI, VMI is currently during migration"); the freeze carries an unfreeze
timeout after which the guest is thawed without an ``Unfreeze``; ``fsFreezeStatus`` is
``"frozen"`` while frozen and absent otherwise. Here the deadline is persisted
(``<vmi dir>/freeze-deadline``, wall-clock epoch seconds) before the freeze is asked, so a
handler killed while the guest is frozen still thaws it at the deadline after its restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.virt_handler.hypervisor_types import DomainInfo, HypervisorError
from shared import events

FROZEN = "frozen"
NOT_RUNNING = "VMI is not running"
PAUSED = "VMI is paused"
NO_AGENT = "VMI does not have guest agent connected"
MIGRATING = "failed to freeze VMI, VMI is currently during migration"
#: seconds between thaw attempts that failed (the last one repeats until the thaw works)
THAW_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class ThawNow:
    """The deadline has passed: thaw the guest (retrying) and drop the record."""


@dataclass(frozen=True)
class ArmTimer:
    """The guest may still be frozen on purpose: thaw it ``delay`` seconds from now."""

    delay: float


@dataclass(frozen=True)
class DropRecord:
    """The domain is gone (or no longer runs): nothing can be frozen; remove the record."""


@dataclass(frozen=True)
class NoRecord:
    """No freeze is armed."""


FreezeRecovery = ThawNow | ArmTimer | DropRecord | NoRecord


def compute_deadline(now: float, unfreeze_timeout_seconds: int) -> float:
    """The wall-clock second (epoch) at which a freeze asked at ``now`` ends on its own.
    Raises ``ValueError`` for a timeout that is not positive (the command's contract)."""
    if unfreeze_timeout_seconds <= 0:
        raise ValueError(f"unfreeze timeout must be positive, not {unfreeze_timeout_seconds}")
    return now + unfreeze_timeout_seconds


def compute_freeze_recovery(deadline: float | None, now: float, domain_active: bool) -> FreezeRecovery:
    """What to do about a recorded unfreeze ``deadline`` (None: no record) at wall-clock
    ``now`` for a domain that runs (``domain_active``) or not."""
    if deadline is None:
        return NoRecord()
    if not domain_active:
        return DropRecord()
    if deadline <= now:
        return ThawNow()
    return ArmTimer(delay=deadline - now)


def compute_thaw_retry_delay(failures: int) -> float:
    """Seconds before the next thaw attempt after ``failures`` (>= 1) failed ones."""
    return THAW_RETRY_DELAYS[min(max(failures, 1), len(THAW_RETRY_DELAYS)) - 1]


def compute_fs_freeze_status(deadline: float | None, now: float) -> str | None:
    """``status.fsFreezeStatus``: ``"frozen"`` while an armed freeze has not reached its deadline
    (the record exists only between a freeze and its thaw), else None (the field is absent)."""
    return FROZEN if deadline is not None and deadline > now else None


def compute_freeze_refusal(command: events.Freeze | events.Unfreeze, domain: DomainInfo | None,
                           vmi_running: bool, agent_connected: bool, migrating: bool,
                           armed: bool) -> events.CommandResult | None:
    """The 409 answer when ``command`` may not run (None: go ahead).

    ``vmi_running``: VMI phase Running; ``armed``: an unfreeze deadline is recorded. An
    ``Unfreeze`` with neither an agent nor an armed freeze has nothing to thaw: it succeeds
    (``CommandResult`` 200) without touching the guest. A paused guest can neither freeze nor
    thaw (libvirt: "domain is not running"): both answer 409 "VMI is paused", as KubeVirt does
    for the commands a paused VMI cannot run (an armed deadline stays: after the unpause the
    timer, or a new ``Unfreeze``, thaws).
    """
    if domain is None or not domain.is_active or not vmi_running:
        return events.CommandResult(code=409, reason="Conflict", message=NOT_RUNNING)
    if isinstance(command, events.Unfreeze) and not agent_connected and not armed:
        return events.CommandResult()
    if domain.state == "Paused":
        return events.CommandResult(code=409, reason="Conflict", message=PAUSED)
    if isinstance(command, events.Unfreeze):
        return None
    if not agent_connected:
        return events.CommandResult(code=409, reason="Conflict", message=NO_AGENT)
    if migrating:
        return events.CommandResult(code=409, reason="Conflict", message=MIGRATING)
    return None


def compute_agent_error(err: HypervisorError) -> events.CommandResult:
    """The answer for a failed freeze or thaw: 409 when libvirt says the domain's state forbids
    it, else 500 with libvirt's (the agent's) message (an agent error, or its silence past the
    call's timeout)."""
    if err.reason == "OperationInvalid":
        return events.CommandResult(code=409, reason="Conflict", message=err.message)
    return events.CommandResult(code=500, reason="InternalError", message=err.message)
