"""Incremental accounting of scheduler-bridge: requests per node and the VMIs waiting for one.

A scheduling round must not scan every VMI of the installation: :class:`PlacementBook` is kept
current from the informer's change events, one VMI at a time, so a round costs
O(waiting VMIs + nodes) whatever the number of VMIs placed before. It holds

* ``totals``: node name -> sum of the requests of the VMIs that hold the node
  (:func:`~services.scheduler_bridge.placement.holds_node`), where a VMI whose placement is being
  written counts on the node it is being written to (kube-scheduler's "assume") instead;
* the waiting VMIs (:func:`~services.scheduler_bridge.vmi_writes.is_waiting_for_node`) with their
  queue order, oldest first: ``(creationTimestamp, resourceVersion)``;
* the migration targets: a VMIM that is not final and names a target node (or whose target is being
  written) reserves its VMI's requests on that node, as KubeVirt's target launcher pod holds them
  next to the source pod while the migration runs. Counted once: when the VMI's own holding is
  already that node (the ownership switch happened, the VMIM is not final yet), the reservation
  adds nothing; a VMI holding no node (final, gone) reserves nothing either.

Everything here is deterministic bookkeeping without I/O; the service feeds it (``observe`` /
``forget`` from informer events, ``assume`` / ``release`` around its writes) and reads it
(``placed``, ``pending_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.scheduler_bridge.resource_requests import NO_REQUESTS, Requests

QueueOrder = tuple[str, int]
"""Sort key of a waiting VMI: ``(metadata.creationTimestamp or "", resourceVersion as int)``."""

Holding = tuple[str, Requests]
"""A node name and the requests counted on it."""


def compute_queue_order(creation_timestamp: str | None, resource_version: str | None) -> QueueOrder:
    """The :data:`QueueOrder` of a VMI (RFC 3339 timestamps of one format sort as text; an
    unparsable resourceVersion counts as 0)."""
    try:
        revision = int(resource_version or 0)
    except ValueError:
        revision = 0
    return (creation_timestamp or "", revision)


@dataclass
class PlacementBook:
    """Requests per node and waiting VMIs, updated one change at a time (see module docstring).

    Keys are VMI keys (``namespace/name``)."""

    totals: dict[str, Requests] = field(default_factory=dict)
    held: dict[str, Holding] = field(default_factory=dict)
    assumed: dict[str, Holding] = field(default_factory=dict)
    waiting: dict[str, QueueOrder] = field(default_factory=dict)
    targets: dict[str, tuple[str, str]] = field(default_factory=dict)
    """VMIM key -> (VMI key, target node) of the reserving migrations."""
    reserved: dict[str, Holding] = field(default_factory=dict)
    """VMIM key -> what its reservation adds to ``totals`` now."""
    targets_of: dict[str, set[str]] = field(default_factory=dict)
    """VMI key -> keys of the VMIMs reserving for it."""

    def _counted(self, key: str) -> Holding | None:
        return self.assumed.get(key) or self.held.get(key)

    def _shift(self, before: Holding | None, after: Holding | None) -> None:
        if before == after:
            return
        if before is not None:
            node, request = before
            left = self.totals.get(node, NO_REQUESTS) - request
            if left == NO_REQUESTS:
                self.totals.pop(node, None)
            else:
                self.totals[node] = left
        if after is not None:
            node, request = after
            self.totals[node] = self.totals.get(node, NO_REQUESTS) + request

    def _reservation(self, migration: str) -> Holding | None:
        entry = self.targets.get(migration)
        if entry is None:
            return None
        vmi_key, node = entry
        counted = self._counted(vmi_key)
        if counted is None or counted[0] == node:
            return None
        return (node, counted[1])

    def _refresh(self, migration: str) -> None:
        after = self._reservation(migration)
        before = self.reserved.pop(migration, None)
        if after is not None:
            self.reserved[migration] = after
        self._shift(before, after)

    def _refresh_vmi(self, key: str) -> None:
        for migration in self.targets_of.get(key, ()):
            self._refresh(migration)

    def observe(self, key: str, holding: Holding | None, order: QueueOrder | None) -> None:
        """The latest state of VMI ``key``: the node it holds with its requests (None: none)
        and its queue order when it waits for a node (None: it does not wait)."""
        before = self._counted(key)
        if holding is None:
            self.held.pop(key, None)
        else:
            self.held[key] = holding
        self._shift(before, self._counted(key))
        self._refresh_vmi(key)
        if order is None:
            self.waiting.pop(key, None)
        else:
            self.waiting[key] = order

    def forget(self, key: str) -> None:
        """VMI ``key`` is gone (deleted)."""
        self.observe(key, None, None)

    def assume(self, key: str, node: str, request: Requests) -> None:
        """A placement of ``key`` on ``node`` is being written: count it there from now on and
        leave it out of the pending VMIs."""
        before = self._counted(key)
        self.assumed[key] = (node, request)
        self._shift(before, self._counted(key))
        self._refresh_vmi(key)

    def release(self, key: str) -> None:
        """The write for ``key`` ended (either way): count what the informer says again."""
        before = self._counted(key)
        self.assumed.pop(key, None)
        self._shift(before, self._counted(key))
        self._refresh_vmi(key)

    def observe_migration(self, migration: str, vmi_key: str, target: str | None) -> None:
        """The latest state of VMIM ``migration`` (moving VMI ``vmi_key``): ``target`` is the node it
        reserves (its ``migrationState.targetNode``, or the one being written) while it is not
        final, None when it reserves nothing (final, no target yet, deleted)."""
        old = self.targets.pop(migration, None)
        if old is not None:
            users = self.targets_of.get(old[0])
            if users is not None:
                users.discard(migration)
                if not users:
                    del self.targets_of[old[0]]
        if target is not None:
            self.targets[migration] = (vmi_key, target)
            self.targets_of.setdefault(vmi_key, set()).add(migration)
        self._refresh(migration)

    def reserving_migrations(self) -> dict[str, tuple[str, str]]:
        """A copy of VMIM key -> (VMI key, target node) of the reserving migrations."""
        return dict(self.targets)

    def placed(self) -> dict[str, Requests]:
        """A copy of the requests per node (a round adds its own decisions to it)."""
        return dict(self.totals)

    def pending_keys(self) -> list[str]:
        """Keys of the VMIs waiting for a node and not being written, oldest first (equal
        orders, which distinct resourceVersions rule out, by key)."""
        waiting = self.waiting
        return sorted((key for key in waiting if key not in self.assumed), key=lambda key: (waiting[key], key))

    def is_consistent_with(self, expected: Mapping[str, Requests]) -> bool:
        """Whether ``totals`` equals ``expected`` ignoring nodes at zero (for tests and checks)."""
        def nonzero(totals: Mapping[str, Requests]) -> dict[str, Requests]:
            return {node: r for node, r in totals.items() if r != NO_REQUESTS}
        return nonzero(self.totals) == nonzero(expected)
