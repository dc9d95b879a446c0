"""scheduler-bridge's effectful side for live migrations: target nodes for VMIMs in ``Scheduling``.

Part of :class:`~services.scheduler_bridge.service.SchedulerBridge` (same round, same node facts,
same accounting). Watches VMIMs with a typed informer; for each one awaiting a target
(:func:`~services.scheduler_bridge.migration_targets.is_awaiting_target`) it decides with
:func:`~services.scheduler_bridge.migration_targets.plan_migration_target` (pure) and

- placed: reserves the VMI's requests on the target at once (so the rest of the round and the
  next rounds see them), then one compare-and-swap on the VMIM's ``/status`` setting
  ``migrationState.targetNode``/``sourceNode`` and keeping every other status field; on
  ``Conflict`` it reads the VMIM again and retries while it still awaits a target (another writer,
  virt-migration, changed it meanwhile);
- unschedulable: a Warning Event ``FailedScheduling`` on the VMIM with the scheduler's message,
  once per distinct message, and nothing else (virt-migration fails a VMIM left in Scheduling
  past its scheduling timeout).

Each decision is a span under the VMIM's trace context (``shared.tracing.object_span``).
The reservation lasts while the VMIM is not final (see ``accounting.PlacementBook``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.scheduler_bridge.accounting import PlacementBook
from services.scheduler_bridge.migration_targets import (
    TargetDecision,
    compute_status_with_target,
    is_awaiting_target,
    plan_migration_target,
    reserved_target,
    vmi_key_of,
)
from services.scheduler_bridge.placement import NodeFacts
from services.scheduler_bridge.resource_requests import NO_REQUESTS, Requests
from shared import tracing
from shared.api.decoding import encode_object
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.vmi import VirtualMachineInstance
from shared.errors import ApiError, Conflict, NotFound
from shared.events_recorder import WARNING, EventRecorder
from shared.informer import Informer, decode_as, key_of

log = logging.getLogger(__name__)

VMIMS = "virtualmachineinstancemigrations"
FAILED_SCHEDULING = "FailedScheduling"
COMPONENT = "scheduler-bridge"
MAX_CONFLICT_RETRIES = 5


def _as_dict(vmim: VirtualMachineInstanceMigration) -> dict[str, Any]:
    body = encode_object(vmim)
    body.setdefault("apiVersion", "kubevirt.io/v1")
    body.setdefault("kind", "VirtualMachineInstanceMigration")
    return body


class MigrationTargets:
    """Target placement of VMIMs (see module docstring).

    ``store``: the ObjectStore; ``book``: the bridge's accounting; ``vmi_of``: VMI by key from
    the bridge's cache; ``requests_of``: the bridge's memoized VMI requests; ``spawn``: runs a
    write in the background (the bridge bounds and tracks them); ``wake``: asks for another
    round."""

    def __init__(self, store: Any, book: PlacementBook, *,
                 vmi_of: Callable[[str], VirtualMachineInstance | None],
                 requests_of: Callable[[VirtualMachineInstance], Requests],
                 wake: Callable[[], None], clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.book = book
        self.vmi_of = vmi_of
        self.requests_of = requests_of
        self.wake = wake
        self.informer = Informer(store, VMIMS, decode=VirtualMachineInstanceMigration)
        self.events = EventRecorder(store, COMPONENT, clock=clock)
        self.in_flight: set[str] = set()
        self.reported: dict[str, str] = {}  # VMIM key -> last FailedScheduling message
        self.targets_written = 0
        self.informer.add_handler(self._on_vmim)

    def _on_vmim(self, old: VirtualMachineInstanceMigration | None,
                 new: VirtualMachineInstanceMigration | None) -> None:
        current = new if new is not None else old
        if current is None:
            return
        key = key_of(current)
        if new is None:
            self.book.observe_migration(key, vmi_key_of(current), None)
            self.reported.pop(key, None)
        elif key not in self.in_flight:  # a write in flight keeps its reservation until it ends
            self.book.observe_migration(key, vmi_key_of(new), reserved_target(new))
            if not is_awaiting_target(new):
                self.reported.pop(key, None)
        self.wake()

    def awaiting(self) -> list[VirtualMachineInstanceMigration]:
        """VMIMs awaiting a target and not being written, oldest first (creationTimestamp, key)."""
        out = [m for m in self.informer.items() if is_awaiting_target(m) and key_of(m) not in self.in_flight]
        out.sort(key=lambda m: ((m.metadata.creation_timestamp if m.metadata else None) or "", key_of(m)))
        return out

    def decide(self, vmim: VirtualMachineInstanceMigration, nodes: list[NodeFacts],
               placed: dict[str, Requests]) -> TargetDecision | None:
        """The decision for one VMIM this round, in a span under its trace (None: its VMI is not
        running, nothing to do). Raises ``BadRequest`` for unparsable quantities of the VMI."""
        vmi = self.vmi_of(vmi_key_of(vmim))
        if vmi is None:
            return None
        with tracing.object_span(COMPONENT, "place migration target", _as_dict(vmim)) as span:
            decision = plan_migration_target(vmim, vmi, nodes, placed, self.requests_of(vmi))
            if decision is None:
                return None
            span.set_attribute("kubevirt.migration.source_node", decision.source_node)
            if decision.target_node is not None:
                span.set_attribute("k8s.node.name", decision.target_node)
            else:
                tracing.mark_failed("Unschedulable", decision.message, span)
        return decision

    def plan_round(self, nodes: list[NodeFacts], placed: dict[str, Requests]) -> list[tuple[str, Any]]:
        """Decide for every VMIM awaiting a target; ``placed`` gains each reservation. Returns the
        writes to start: ``("target", (vmim, decision))`` or ``("event", (vmim, message))``."""
        work: list[tuple[str, Any]] = []
        for vmim in self.awaiting():
            key = key_of(vmim)
            try:
                decision = self.decide(vmim, nodes, placed)
            except ApiError as err:
                log.warning("VMIM %s: %s", key, err)
                continue
            if decision is None:
                continue
            if decision.target_node is not None:
                vmi = self.vmi_of(vmi_key_of(vmim))
                request = self.requests_of(vmi) if vmi is not None else NO_REQUESTS
                self.in_flight.add(key)
                self.book.observe_migration(key, vmi_key_of(vmim), decision.target_node)
                placed[decision.target_node] = placed.get(decision.target_node, NO_REQUESTS) + request
                work.append(("target", (vmim, decision)))
            elif self.reported.get(key) != decision.message:
                self.reported[key] = decision.message
                work.append(("event", (vmim, decision.message)))
        return work

    async def write_target(self, vmim: VirtualMachineInstanceMigration, decision: TargetDecision) -> None:
        """CAS ``migrationState.targetNode``/``sourceNode`` on the VMIM's status, retrying on
        Conflict with a fresh copy while it still awaits a target; releases the reservation
        when nothing was written."""
        key = key_of(vmim)
        written = False
        try:
            current = vmim
            for _ in range(MAX_CONFLICT_RETRIES):
                target, source = decision.target_node or "", decision.source_node
                body = _as_dict(current)
                body["status"] = encode_object(compute_status_with_target(current, target, source))
                try:
                    stored = await self.store.update(VMIMS, body, subresource="status")
                except Conflict:
                    fresh = await self.store.get(VMIMS, current.metadata.namespace if current.metadata else None,
                                                 current.metadata.name if current.metadata else "")
                    current = decode_as(VirtualMachineInstanceMigration, fresh)
                    if not is_awaiting_target(current):
                        return
                    continue
                written = True
                self.targets_written += 1
                self.informer.assume(stored)
                log.info("migration %s: target node %s (source %s)", key, target, source)
                return
        except NotFound:
            return
        except Exception as err:  # noqa: BLE001 - any store failure: decide again on a later round
            log.warning("writing the target of migration %s failed: %s", key, err)
        finally:
            self.in_flight.discard(key)
            if not written:
                cached = self.informer.get(key)
                self.book.observe_migration(key, vmi_key_of(vmim), reserved_target(cached) if cached else None)
            else:
                cached = self.informer.get(key)
                if cached is not None:
                    self.book.observe_migration(key, vmi_key_of(cached), reserved_target(cached))
            self.wake()

    async def report_unschedulable(self, vmim: VirtualMachineInstanceMigration, message: str) -> None:
        """The Warning Event ``FailedScheduling`` with the scheduler's message on the VMIM."""
        await self.events.record(_as_dict(vmim), WARNING, FAILED_SCHEDULING, message)
        log.info("migration %s is unschedulable: %s", key_of(vmim), message)

