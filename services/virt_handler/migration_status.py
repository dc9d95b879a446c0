"""The VMI writes both virt-handlers make during a live migration (pure: VMI dict in, new status
or object out). Each function changes only the ``migrationState`` fields its writer owns
(``notes/migration-design.md``, "Who writes what") and only while ``migrationState.migrationUid``
is still ``uid`` (another migration's state is never touched: the function then returns the
status unchanged, and the executor writes nothing).

- target: :func:`compute_target_ready` (``targetNodeAddress``), :func:`compute_claimed_vmi` (the
  ownership compare-and-swap: ``nodeName``, label ``kubevirt.io/nodeName``, ``completed``,
  ``endTimestamp``, ``targetNodeDomainDetected``, ``targetNodeDomainReadyTimestamp``,
  ``migrationMethod``, the final ``progress`` with ``downtimeMs`` when known);
- source: :func:`compute_source_started` (``startTimestamp``, ``mode: PreCopy``),
  :func:`compute_progress_status` (``progress``), :func:`compute_mode_status` (``mode``),
  :func:`compute_abort_status` (``abortStatus``), :func:`compute_source_outcome` (``completed``,
  ``failed``, ``failureReason``, ``endTimestamp``, ``abortStatus``, ``progress.downtimeMs``).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from shared.api.vocabulary import format_micro_time, format_time

NODE_NAME_LABEL = "kubevirt.io/nodeName"


def _status(vmi: dict[str, Any]) -> dict[str, Any]:
    return dict(vmi.get("status") or {})


def _with_state(vmi: dict[str, Any], uid: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The status of ``vmi`` with ``changes`` merged into ``migrationState`` when its
    ``migrationUid`` is ``uid`` (else unchanged)."""
    status = _status(vmi)
    ms = dict(status.get("migrationState") or {})
    if ms.get("migrationUid") != uid:
        return status
    ms.update(changes)
    status["migrationState"] = ms
    return status


def compute_target_ready(vmi: dict[str, Any], uid: str, address: str) -> dict[str, Any]:
    """Target ready: ``targetNodeAddress`` (where the migration data goes)."""
    return _with_state(vmi, uid, {"targetNodeAddress": address})


def compute_source_started(vmi: dict[str, Any], uid: str, now: datetime) -> dict[str, Any]:
    """Written before the transfer begins: ``startTimestamp`` (kept when already set) and ``mode``."""
    ms = (_status(vmi).get("migrationState") or {})
    if ms.get("startTimestamp"):
        return _status(vmi)
    return _with_state(vmi, uid, {"startTimestamp": format_time(now), "mode": "PreCopy"})


def compute_progress_status(vmi: dict[str, Any], uid: str, progress: dict[str, Any]) -> dict[str, Any]:
    """The latest job-statistics sample as ``migrationState.progress`` (a final state is kept)."""
    ms = (_status(vmi).get("migrationState") or {})
    if ms.get("completed"):
        return _status(vmi)
    return _with_state(vmi, uid, {"progress": progress})


def compute_mode_status(vmi: dict[str, Any], uid: str, mode: str) -> dict[str, Any]:
    """``migrationState.mode`` (``PostCopy`` after the switch, ``Paused`` when the guest was paused)."""
    return _with_state(vmi, uid, {"mode": mode})


def compute_abort_status(vmi: dict[str, Any], uid: str, abort_status: str) -> dict[str, Any]:
    """``migrationState.abortStatus`` (``Aborting`` while libvirt cancels the job)."""
    return _with_state(vmi, uid, {"abortStatus": abort_status})


def compute_source_outcome(vmi: dict[str, Any], uid: str, *, succeeded: bool, reason: str | None,
                           abort_status: str | None, now: datetime,
                           progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """The end of the migration as the source saw it: ``completed=true`` and, on failure,
    ``failed=true`` with ``failureReason``; ``endTimestamp`` (kept when set); ``abortStatus`` when
    given; ``progress`` merged (e.g. ``downtimeMs``). Nothing changes once ``completed`` is set."""
    ms = (_status(vmi).get("migrationState") or {})
    if ms.get("completed"):
        return _status(vmi)
    changes: dict[str, Any] = {"completed": True, "endTimestamp": ms.get("endTimestamp") or format_time(now)}
    if not succeeded:
        changes["failed"] = True
        changes["failureReason"] = reason or "Live migration failed"
    if abort_status:
        changes["abortStatus"] = abort_status
    if progress:
        changes["progress"] = {**(ms.get("progress") or {}), **progress}
    return _with_state(vmi, uid, changes)


def compute_claimed_vmi(vmi: dict[str, Any], uid: str, node_name: str, *, now: datetime, method: str,
                        progress: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The whole VMI after the target's ownership compare-and-swap, or None when it must not be
    made: another migration, a failed one, or ``nodeName`` not the migration's source (already
    this node: nothing to do either). ``progress``: the final sample (the destination's
    completed-job statistics, with QEMU's ``downtimeMs``) merged over the source's last one."""
    status = _status(vmi)
    ms = dict(status.get("migrationState") or {})
    if ms.get("migrationUid") != uid or ms.get("failed") or ms.get("targetNode") != node_name:
        return None
    if status.get("nodeName") != ms.get("sourceNode"):
        return None
    stamp = format_time(now)
    ms.update({"completed": True, "endTimestamp": ms.get("endTimestamp") or stamp,
               "targetNodeDomainDetected": True,
               "targetNodeDomainReadyTimestamp": ms.get("targetNodeDomainReadyTimestamp") or format_micro_time(now)})
    if progress:
        ms["progress"] = {**(ms.get("progress") or {}), **progress}
    status.update({"nodeName": node_name, "migrationState": ms, "migrationMethod": method})
    new = copy.copy(vmi)
    meta = dict(vmi.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), NODE_NAME_LABEL: node_name}
    new["metadata"] = meta
    new["status"] = status
    return new
