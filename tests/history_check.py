"""Jepsen-style checker of a client-side history against the final state (pure).

Clients write objects through the API and log every operation with its outcome, as Jepsen does:
``ok`` (acknowledged), ``fail`` (definitely not applied: the server said so) or ``info``
(indeterminate: the connection broke or the client gave up, it may or may not have been
applied). Each key is written by one client at a time, in order, and every write carries a
value no other write uses, so the set of states a key may end in is exact:

* start: absent;
* ``create v`` / ``update v``: ``ok`` -> exactly ``v``; ``info`` -> what was possible, or ``v``;
* ``delete``: ``ok`` -> absent; ``info`` -> what was possible, or absent;
* ``fail`` changes nothing.

The final state violates the history when a key's final value is not among its possible states:
an acknowledged write lost (the value went back to an older one, or an acknowledged object is
absent), a deleted object back (absent was the only possibility), or a failed write applied.
Beside the values, the final instances (VMIs) and guests (libvirt domains on every node) must
show no VM twice: at most one VMI per VM, at most one running guest per VM, and every running
guest belongs to its VM's current VMI; a VMI whose VM is absent is a deleted object back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["create", "update", "delete"]
Outcome = Literal["ok", "fail", "info"]
ABSENT: None = None


@dataclass(frozen=True)
class Operation:
    """One client operation on ``key``: ``value`` written (None for a delete), its ``outcome``."""

    key: str
    kind: Kind
    value: str | None
    outcome: Outcome


@dataclass(frozen=True)
class Instance:
    """A VMI in the final state: the VM ``key`` it belongs to, its ``uid``, ``phase``."""

    key: str
    uid: str
    phase: str


@dataclass(frozen=True)
class Guest:
    """A libvirt domain in the final state: VM ``key``, ``node``, the VMI ``uid`` it was made for,
    whether it runs (``active``)."""

    key: str
    node: str
    uid: str
    active: bool


@dataclass(frozen=True)
class FinalState:
    """``values``: key -> final value of every object present (absent keys are absent);
    ``instances`` and ``guests`` as found."""

    values: Mapping[str, str]
    instances: Sequence[Instance] = ()
    guests: Sequence[Guest] = ()


@dataclass(frozen=True)
class Verdict:
    """What the checker found, one readable line per anomaly."""

    lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    failed_applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    acknowledged: int = 0
    indeterminate: int = 0

    @property
    def valid(self) -> bool:
        return not (self.lost or self.resurrected or self.failed_applied or self.duplicates)


def compute_possible_states(ops: Iterable[Operation]) -> set[str | None]:
    """The values one key may end in after ``ops`` (its operations in order); None is absent."""
    possible: set[str | None] = {ABSENT}
    for op in ops:
        written = op.value if op.kind != "delete" else ABSENT
        if op.outcome == "ok":
            possible = {written}
        elif op.outcome == "info":
            possible = possible | {written}
    return possible


def check_history(history: Sequence[Operation], final: FinalState) -> Verdict:
    """Check ``history`` (every client's operations, each key's in order) against ``final``."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    lost: list[str] = []
    resurrected: list[str] = []
    failed_applied: list[str] = []
    for key in sorted(set(by_key) | set(final.values)):
        ops = by_key.get(key, [])
        value = final.values.get(key, ABSENT)
        possible = compute_possible_states(ops)
        if value in possible:
            continue
        failed_values = {op.value for op in ops if op.outcome == "fail" and op.kind != "delete"}
        if value is not ABSENT and possible == {ABSENT}:
            resurrected.append(f"{key}: deleted (or never written), but present with {value!r}")
        elif value is not ABSENT and value in failed_values:
            failed_applied.append(f"{key}: a failed write is applied ({value!r})")
        else:
            expected = " or ".join(sorted(repr(v) for v in possible))
            lost.append(f"{key}: acknowledged {expected}, found {value!r}")
    duplicates = compute_duplicates(final)
    resurrected += [f"{i.key}: VMI {i.uid} of an absent VM" for i in final.instances if i.key not in final.values]
    return Verdict(lost=lost, resurrected=resurrected, failed_applied=failed_applied, duplicates=duplicates,
                   acknowledged=sum(op.outcome == "ok" for op in history),
                   indeterminate=sum(op.outcome == "info" for op in history))


def compute_duplicates(final: FinalState) -> list[str]:
    """VMs seen twice in the final state: two VMIs, two running guests, or a running guest that
    is not its VM's current VMI's."""
    found: list[str] = []
    instances: dict[str, list[Instance]] = defaultdict(list)
    for instance in final.instances:
        instances[instance.key].append(instance)
    for key, items in sorted(instances.items()):
        if len(items) > 1:
            found.append(f"{key}: {len(items)} VMIs ({', '.join(sorted(i.uid for i in items))})")
    running: dict[str, list[Guest]] = defaultdict(list)
    for guest in final.guests:
        if guest.active:
            running[guest.key].append(guest)
    for key, guests in sorted(running.items()):
        where = ", ".join(sorted(f"{g.node}:{g.uid}" for g in guests))
        if len(guests) > 1:
            found.append(f"{key}: {len(guests)} running guests ({where})")
        current = {i.uid for i in instances.get(key, [])}
        stale = [g for g in guests if g.uid not in current]
        if stale:
            found.append(f"{key}: a running guest of no current VMI ({where})")
    return found
