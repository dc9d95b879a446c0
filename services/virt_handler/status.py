"""VMI status as virt-handler reports it, computed from the libvirt domain (pure).

Owns KubeVirt's rules for turning a domain's state and reason into a VMI phase
(``pkg/virt-handler``: ``calculateVmPhaseForStatusReason``) and the conditions the
handler keeps (``Ready``, ``Paused``, ``AgentConnected``, ``Synchronized``).
The executor (``sync_executor.py``) reads the domain, calls these functions and writes the
result only when it differs from the stored status.

Phase rules:
- domain ``Running``/``Blocked``/``PMSuspended``, or ``Paused`` (except reason
  ``PostCopyFailed``) -> ``Running``;
- ``Shutoff``/``Crashed`` with reason ``Crashed``/``Panicked``/``Failed`` -> ``Failed``;
  ``Destroyed`` -> ``Failed`` when the guest has ACPI (a graceful shutdown was possible
  and did not finish within the grace period, or something killed the guest), else
  ``Succeeded``; ``Shutdown``/``Saved``/``FromSnapshot`` -> ``Succeeded``;
- no domain while the VMI was ``Running`` -> ``Failed`` (the guest vanished).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.api.vocabulary import (
    ConditionStatus,
    ConditionType,
    Phase,
    format_micro_time,
    format_time,
    is_final_phase,
)

PAUSED_READINESS_GATE = "kubevirt.io/virtual-machine-unpaused"
_PAUSE_REASONS = {"User": ("PausedByUser", "VMI was paused by user"),
                  "IOError": ("PausedIOError", "VMI was paused, low-level IO error detected")}


def is_acpi_enabled(vmi: dict[str, Any]) -> bool:
    """ACPI is on unless ``spec.domain.features.acpi.enabled`` is false (KubeVirt default)."""
    acpi = ((((vmi.get("spec") or {}).get("domain") or {}).get("features") or {}).get("acpi"))
    if acpi is None:
        return True
    return acpi.get("enabled", True) is not False


def compute_phase(state: str, reason: str, *, acpi_enabled: bool) -> str:
    """The VMI phase for a domain in ``state`` with ``reason`` (KubeVirt names, see
    ``hypervisor.DOMAIN_STATES``/``STATE_REASONS``); rules in the module docstring."""
    if state in ("Running", "Blocked", "PMSuspended", "Shutdown"):
        return Phase.RUNNING
    if state == "Paused":
        return Phase.FAILED if reason == "PostCopyFailed" else Phase.RUNNING
    if reason in ("Shutdown", "Saved", "FromSnapshot", "Migrated"):
        return Phase.SUCCEEDED
    if reason == "Destroyed":
        return Phase.FAILED if acpi_enabled else Phase.SUCCEEDED
    return Phase.FAILED  # Crashed, Panicked, Failed, Unknown, NoState


def _condition(ctype: str, status: str, now: str, reason: str = "", message: str = "") -> dict[str, Any]:
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def with_conditions(conditions: list[dict[str, Any]] | None,
                    wanted: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``conditions`` with each type in ``wanted`` replaced (or removed when None); a condition
    whose status, reason and message are unchanged keeps its old timestamps, so re-applying
    the same facts produces an equal list (and no store write)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cond in conditions or []:
        ctype = cond.get("type")
        if ctype not in wanted:
            out.append(cond)
            continue
        seen.add(ctype)
        new = wanted[ctype]
        if new is None:
            continue
        same = all(cond.get(k) == new.get(k) for k in ("status", "reason", "message"))
        out.append(cond if same else new)
    out.extend(c for t, c in wanted.items() if t not in seen and c is not None)
    return out


def with_phase(status: dict[str, Any], phase: str, precise_now: str) -> dict[str, Any]:
    """``status`` in ``phase``; ``phaseTransitionTimestamps`` gains an entry only on a change."""
    new = dict(status)
    if new.get("phase") == phase:
        return new
    new["phase"] = phase
    new["phaseTransitionTimestamps"] = [*(new.get("phaseTransitionTimestamps") or []),
                                        {"phase": phase, "phaseTransitionTimestamp": precise_now}]
    return new


def compute_live_status(vmi: dict[str, Any], state: str, reason: str, *, now: datetime,
                        agent_connected: bool = False, extra: dict[str, Any] | None = None,
                        migratability: tuple[dict[str, Any], str] | None = None,
                        fs_freeze_status: str | None = None) -> dict[str, Any]:
    """The VMI status for a domain that exists in ``state``/``reason``.

    Sets the phase (with transition timestamp), ``Ready`` (True while running; False while
    paused, as the launcher pod's ``kubevirt.io/virtual-machine-unpaused`` readiness gate
    makes it in KubeVirt), ``Paused`` (only while paused), ``AgentConnected`` (only while the
    guest agent is connected) and removes a failed ``Synchronized`` condition. ``extra`` is
    merged into the status (e.g. ``guestOSInfo``, ``interfaces``, ``machine``). ``migratability``:
    the ``LiveMigratable`` condition and ``migrationMethod`` (``migratability`` module) to keep.
    ``fs_freeze_status``: ``status.fsFreezeStatus`` (``"frozen"`` while the guest's filesystems
    are frozen; None removes the field, as KubeVirt leaves it empty when thawed).
    """
    status = dict(vmi.get("status") or {})
    stamp = format_time(now)
    phase = compute_phase(state, reason, acpi_enabled=is_acpi_enabled(vmi))
    if is_final_phase(phase):
        return compute_final_status(vmi, phase, now=now)
    status = with_phase(status, phase, format_micro_time(now))
    paused = state == "Paused"
    if paused:
        ready = _condition(ConditionType.READY, ConditionStatus.FALSE, stamp, "ReadinessGatesNotReady",
                           f'the status of pod readiness gate "{PAUSED_READINESS_GATE}" is not "True", but False')
        pause_reason, pause_message = _PAUSE_REASONS.get(reason, ("PausedByUser", "VMI was paused by user"))
        paused_cond = _condition(ConditionType.PAUSED, ConditionStatus.TRUE, stamp, pause_reason, pause_message)
    else:
        ready, paused_cond = _condition(ConditionType.READY, ConditionStatus.TRUE, stamp), None
    agent = _condition(ConditionType.AGENT_CONNECTED, ConditionStatus.TRUE, stamp) if agent_connected else None
    wanted: dict[str, dict[str, Any] | None] = {
        ConditionType.READY: ready, ConditionType.PAUSED: paused_cond, ConditionType.AGENT_CONNECTED: agent,
        ConditionType.SYNCHRONIZED: None}
    if migratability is not None:
        wanted[ConditionType.LIVE_MIGRATABLE] = migratability[0]
        status["migrationMethod"] = migratability[1]
    status["conditions"] = with_conditions(status.get("conditions"), wanted)
    if extra:
        status.update(extra)
    if fs_freeze_status:
        status["fsFreezeStatus"] = fs_freeze_status
    else:
        status.pop("fsFreezeStatus", None)
    return status


def compute_final_status(vmi: dict[str, Any], phase: str, *, now: datetime) -> dict[str, Any]:
    """The status of a VMI whose guest is gone for good: ``phase`` Succeeded or Failed,
    ``Ready`` False (``GuestNotRunning``), no ``Paused``/``AgentConnected``/``fsFreezeStatus``."""
    status = with_phase(dict(vmi.get("status") or {}), phase, format_micro_time(now))
    status.pop("fsFreezeStatus", None)
    stamp = format_time(now)
    status["conditions"] = with_conditions(status.get("conditions"), {
        ConditionType.READY: _condition(ConditionType.READY, ConditionStatus.FALSE, stamp, "GuestNotRunning",
                                        "Guest VM is not reported as running"),
        ConditionType.PAUSED: None, ConditionType.AGENT_CONNECTED: None})
    return status


def compute_sync_failure_status(vmi: dict[str, Any], reason: str, message: str, *,
                                now: datetime) -> dict[str, Any]:
    """The status after a failed attempt to create the domain: condition ``Synchronized``
    False with ``reason`` (e.g. ``ErrImagePull``, ``ImagePullBackOff``, ``FailedPvcNotFound``,
    ``SyncFailed``) and ``message``; the phase is left as it was (KubeVirt retries)."""
    status = dict(vmi.get("status") or {})
    status["conditions"] = with_conditions(status.get("conditions"), {
        ConditionType.SYNCHRONIZED: _condition(ConditionType.SYNCHRONIZED, ConditionStatus.FALSE, format_time(now),
                                               reason, message)})
    return status


def is_status_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change the stored status."""
    return (old or {}) != new
