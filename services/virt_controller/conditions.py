"""Reading and writing ``status.conditions`` lists of :class:`shared.api.meta.Condition` (pure).

A condition is ``{type, status, reason?, message?, lastProbeTime?, lastTransitionTime?}``
(Kubernetes convention). ``lastTransitionTime`` changes only when ``status`` changes, so that
re-applying the same condition leaves the object equal and no write happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from shared.api.meta import Condition
from shared.api.vocabulary import ConditionStatus

__all__ = ["find_condition", "has_condition", "with_condition", "without_condition"]


def find_condition(conditions: Sequence[Condition] | None, ctype: str) -> Condition | None:
    """The condition of type ``ctype`` in ``conditions`` (None when absent)."""
    for cond in conditions or ():
        if cond.type == ctype:
            return cond
    return None


def has_condition(conditions: Sequence[Condition] | None, ctype: str,
                  status: str = ConditionStatus.TRUE, reason: str | None = None) -> bool:
    """True when condition ``ctype`` has ``status`` (and ``reason`` when given)."""
    cond = find_condition(conditions, ctype)
    if cond is None or cond.status != status:
        return False
    return reason is None or cond.reason == reason


def with_condition(conditions: Sequence[Condition] | None, new: Condition, now: str) -> list[Condition]:
    """A copy of ``conditions`` with ``new`` set (replacing the one of the same type).

    ``lastTransitionTime`` is kept from the old condition when the status did not change,
    otherwise set to ``now`` unless ``new`` carries one.
    """
    out: list[Condition] = []
    replaced = False
    for cond in conditions or ():
        if cond.type != new.type:
            out.append(cond)
            continue
        replaced = True
        if cond.status == new.status and cond.last_transition_time:
            out.append(msgspec.structs.replace(new, last_transition_time=cond.last_transition_time))
        else:
            out.append(new if new.last_transition_time else
                       msgspec.structs.replace(new, last_transition_time=now))
    if not replaced:
        out.append(new if new.last_transition_time else msgspec.structs.replace(new, last_transition_time=now))
    return out


def without_condition(conditions: Sequence[Condition] | None, ctype: str) -> list[Condition]:
    """A copy of ``conditions`` without type ``ctype``."""
    return [c for c in conditions or () if c.type != ctype]
