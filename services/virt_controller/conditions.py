"""Reading and writing ``status.conditions`` lists on plain dicts (pure).

A condition is ``{type, status, reason?, message?, lastProbeTime?, lastTransitionTime?}``
(Kubernetes convention). ``lastTransitionTime`` changes only when ``status`` changes, so that
re-applying the same condition leaves the object equal and no write happens.
"""

from __future__ import annotations

from typing import Any


def find_condition(obj_or_status: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    """The condition of type ``ctype`` in an object (reads ``status.conditions``) or a status dict."""
    if not obj_or_status:
        return None
    nested = obj_or_status.get("status")
    status = nested if isinstance(nested, dict) else obj_or_status
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def has_condition(obj_or_status: dict[str, Any] | None, ctype: str, status: str = "True",
                  reason: str | None = None) -> bool:
    """True when condition ``ctype`` has ``status`` (and ``reason`` when given)."""
    cond = find_condition(obj_or_status, ctype)
    if cond is None or cond.get("status") != status:
        return False
    return reason is None or cond.get("reason") == reason


def with_condition(conditions: list[dict[str, Any]] | None, new: dict[str, Any],
                   now: str) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with ``new`` set (replacing the one of the same type).

    ``lastTransitionTime`` is kept from the old condition when the status did not change,
    otherwise set to ``now`` unless ``new`` carries one.
    """
    out: list[dict[str, Any]] = []
    replaced = False
    for cond in conditions or []:
        if cond.get("type") != new["type"]:
            out.append(cond)
            continue
        replaced = True
        merged = dict(new)
        if cond.get("status") == new.get("status") and cond.get("lastTransitionTime"):
            merged["lastTransitionTime"] = cond["lastTransitionTime"]
        merged.setdefault("lastTransitionTime", now)
        out.append(merged)
    if not replaced:
        merged = dict(new)
        merged.setdefault("lastTransitionTime", now)
        out.append(merged)
    return out


def without_condition(conditions: list[dict[str, Any]] | None, ctype: str) -> list[dict[str, Any]]:
    """A copy of ``conditions`` without type ``ctype``."""
    return [c for c in conditions or [] if c.get("type") != ctype]
