"""scheduler-bridge's service loop on the embedded installation: VMIs in ``Scheduling`` get a node.

Owns the effectful side of placement: the shared informers (:mod:`shared.informer`) of all
VMIs and Nodes, decoded into the :mod:`shared.api` Structs, the incremental accounting of what
each node holds and which VMIs wait (:mod:`services.scheduler_bridge.accounting`, fed by the
informer's events so a round costs O(waiting + nodes)), and the writes
(:mod:`services.scheduler_bridge.vmi_writes` computes them):

- placed: one compare-and-swap write of the whole VMI setting ``status.nodeName``, label
  ``kubevirt.io/nodeName``, phase ``Scheduled`` (with its transition timestamp) and
  dropping a ``PodScheduled=False`` condition;
- unschedulable: condition ``PodScheduled`` ``False``/``Unschedulable`` with the
  scheduler's message (written only when it changes). The VM then shows
  ``ErrorUnschedulable``; the VMI is tried again whenever a Node or a VMI changes.

Crash safety: a placement is a CAS on the VMI's resourceVersion, so a VMI is never placed
twice, whether a bridge dies mid-write or two bridges race; after a restart everything is
read again from the store. Resources of VMIs being written are reserved in memory first
(kube-scheduler's "assume") so concurrent writes never overbook a node.
The decision itself is ``placement.plan_placement_on`` (pure).

Live migrations: VMIMs in ``Scheduling`` get their target node in the same round, after the
VMIs (:mod:`services.scheduler_bridge.migration_service`), and reserve their VMI's requests on
it until they are final.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from services.scheduler_bridge.accounting import PlacementBook, compute_queue_order
from services.scheduler_bridge.migration_service import MigrationTargets
from services.scheduler_bridge.placement import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    NodeFacts,
    PlacementDecision,
    compute_node_facts,
    holds_node,
    plan_placement_on,
)
from services.scheduler_bridge.resource_requests import (
    NO_REQUESTS,
    Requests,
    compute_vmi_requests,
)
from services.scheduler_bridge.vmi_writes import (
    compute_placed_vmi,
    compute_unschedulable_status,
    is_waiting_for_node,
)
from shared import tracing
from shared.api.decoding import encode_object
from shared.api.node import Node
from shared.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from shared.api.vocabulary import utc_now
from shared.errors import ApiError, Conflict, NotFound
from shared.informer import Informer, key_of
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
NODES = "nodes"

__all__ = ["NODES", "VMIS", "SchedulerBridge", "compute_placed_vmi", "compute_unschedulable_status",
           "holds_node", "is_waiting_for_node"]


def _trace_view(vmi: VirtualMachineInstance) -> dict[str, Any] | None:
    """The metadata ``tracing.object_span`` reads, as a dict (None when the VMI carries no
    annotations, so no trace context: the span then costs nothing)."""
    meta = vmi.metadata
    if meta is None or not meta.annotations:
        return None
    return {"metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
                         "resourceVersion": meta.resource_version, "annotations": meta.annotations}}


class SchedulerBridge:
    """Places VMIs from the store on registered Nodes until stopped.

    ``store``: ``shared.store.ObjectStore``; ``clock``: current UTC datetime; ``max_in_flight``:
    concurrent placement writes; ``heartbeat_timeout``: a Node silent for longer is skipped;
    ``retry_interval``: seconds between re-evaluations of unschedulable VMIs when nothing
    changes (heartbeats age out even without events).
    """

    def __init__(self, store: Any, *, clock: Callable[[], datetime] | None = None, max_in_flight: int = 16,
                 heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT, retry_interval: float = 5.0) -> None:
        self.store = store
        self.clock = clock or utc_now
        self.heartbeat_timeout = heartbeat_timeout
        self.retry_interval = retry_interval
        self.vmi_informer = Informer(store, VMIS, decode=VirtualMachineInstance)
        self.node_informer = Informer(store, NODES, decode=Node)
        self.book = PlacementBook()
        self.in_flight = asyncio.Semaphore(max_in_flight)
        self.wake = asyncio.Event()
        self.placements = 0
        self.writes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._requests: dict[str, Requests] = {}  # uid -> requests (a VMI's resources never change)
        self.synced = asyncio.Event()
        self.migrations = MigrationTargets(store, self.book, vmi_of=self.vmi_informer.get,
                                           requests_of=self.requests_of, wake=self.wake.set, clock=self.clock)
        self.vmi_informer.add_handler(self._on_vmi)
        self.node_informer.add_handler(self._on_node)

    # -- caches ------------------------------------------------------------------------------
    @property
    def vmis(self) -> dict[str, VirtualMachineInstance]:
        """The cached VMIs by key (a copy)."""
        return {key_of(v): v for v in self.vmi_informer.items()}

    @property
    def nodes(self) -> dict[str, Node]:
        """The cached Nodes by name (a copy)."""
        return {key_of(n): n for n in self.node_informer.items()}

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        if new is None:
            if old is not None:
                self.book.forget(key_of(old))
                uid = old.metadata.uid if old.metadata else None
                if uid:
                    self._requests.pop(uid, None)
        else:
            key = key_of(new)
            node = holds_node(new)
            holding = None
            if node is not None:
                try:
                    holding = (node, self.requests_of(new))
                except ApiError as err:  # placed by someone else with an unparsable quantity
                    log.warning("VMI %s on %s: %s; counting no resources", key, node, err)
                    holding = (node, NO_REQUESTS)
            order = None
            if is_waiting_for_node(new):
                meta = new.metadata
                order = compute_queue_order(meta.creation_timestamp if meta else None,
                                            meta.resource_version if meta else None)
            self.book.observe(key, holding, order)
        self.wake.set()

    def _on_node(self, _old: Node | None, _new: Node | None) -> None:
        self.wake.set()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def informers(self) -> list[Informer[Any]]:
        """The informers whose caches placement reads (VMIs, Nodes, VMIMs)."""
        return [self.vmi_informer, self.node_informer, self.migrations.informer]

    async def start(self, timeout: float = 60.0) -> None:
        """List and watch VMIs and Nodes, then place in the background. Raises
        ``asyncio.TimeoutError`` (after stopping what it started) when the store cannot be
        listed within ``timeout`` seconds."""
        for informer in self.informers:
            informer.start()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(informer.wait_synced() for informer in self.informers))
        except TimeoutError:
            await self.stop()
            raise
        self.synced.set()
        self._tasks = self.start_placing()

    def start_placing(self) -> list[asyncio.Task[None]]:
        """Start the placement loop and its retry ticker over the (synced) caches; returns their
        tasks. :meth:`start` calls it; a leader-elected bridge calls it on each gain of the lease."""
        spawn = asyncio.get_running_loop().create_task
        self.wake.set()  # a new leader looks at everything waiting at once
        return [spawn(self._loop(), name="bridge-loop"), spawn(self._ticker(), name="bridge-ticker")]

    async def stop(self) -> None:
        """Stop the informers, cancel the loop and in-flight writes, and wait until they ended
        (cancelling again every 2 s: a cancellation can be lost under ``asyncio.wait_for`` on
        Python 3.11, CPython gh-86296)."""
        await self.vmi_informer.stop()
        await self.node_informer.stop()
        await self.migrations.informer.stop()
        await cancel_and_wait([*self._tasks, *self._writers])
        self._tasks = []

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            self.wake.set()

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.schedule_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling round failed")
                await asyncio.sleep(0.5)
                self.wake.set()

    # -- decisions ---------------------------------------------------------------------------
    def requests_of(self, vmi: VirtualMachineInstance) -> Requests:
        """``compute_vmi_requests`` memoized by VMI uid (raises ``BadRequest`` as it does)."""
        uid = vmi.metadata.uid if vmi.metadata else None
        if not uid:
            return compute_vmi_requests(vmi)
        request = self._requests.get(uid)
        if request is None:
            request = self._requests[uid] = compute_vmi_requests(vmi)
        return request

    def compute_placed(self) -> dict[str, Requests]:
        """Requests per node: VMIs holding a node, plus placements being written."""
        return self.book.placed()

    def pending(self) -> list[VirtualMachineInstance]:
        """VMIs waiting for a node and not being written, oldest first."""
        out = []
        for key in self.book.pending_keys():
            vmi = self.vmi_informer.get(key)
            if vmi is not None:
                out.append(vmi)
        return out

    def _node_facts(self, now: datetime) -> list[NodeFacts]:
        facts = []
        for node in self.node_informer.items():
            try:
                facts.append(compute_node_facts(node, now, self.heartbeat_timeout))
            except ApiError as err:  # an unparsable allocatable quantity: the node cannot take VMIs
                log.warning("node %s skipped: %s", key_of(node), err)
        return facts

    async def schedule_pending(self) -> None:
        """One round: decide for every waiting VMI in order, then for every VMIM awaiting a target,
        and start the writes."""
        waiting = self.pending()
        if not waiting and not self.migrations.awaiting():
            return
        placed = self.compute_placed()
        now = self.clock()
        nodes = self._node_facts(now)
        for vmi in waiting:
            key = key_of(vmi)
            request: Requests | None = None
            with tracing.object_span("scheduler-bridge", "place VirtualMachineInstance", _trace_view(vmi)) as span:
                try:
                    request = self.requests_of(vmi)
                    decision = plan_placement_on(vmi, nodes, placed, request)
                except ApiError as err:  # an unparsable quantity: say so on the VMI
                    decision = PlacementDecision(None, f"0/{len(nodes)} nodes are available: {err}")
                if decision.node_name is not None:
                    span.set_attribute("k8s.node.name", decision.node_name)
                else:
                    tracing.mark_failed("Unschedulable", decision.message, span)
            if decision.node_name is not None and request is not None:
                self.book.assume(key, decision.node_name, request)
                placed[decision.node_name] = placed.get(decision.node_name, NO_REQUESTS) + request
                await self.in_flight.acquire()
                self._spawn_writer(self._write_placement(key, vmi, decision.node_name))
            else:
                status = compute_unschedulable_status(vmi, decision.message, now)
                if status is not None:
                    await self.in_flight.acquire()
                    self._spawn_writer(self._write_unschedulable(key, vmi, status))
        for kind, (vmim, detail) in self.migrations.plan_round(nodes, placed):
            await self.in_flight.acquire()
            if kind == "target":
                self._spawn_writer(self._release_after(self.migrations.write_target(vmim, detail)))
            else:
                self._spawn_writer(self._release_after(self.migrations.report_unschedulable(vmim, detail)))

    def _spawn_writer(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def _release_after(self, write: Coroutine[Any, Any, None]) -> None:
        try:
            await write
        finally:
            self.in_flight.release()

    async def _write_placement(self, key: str, vmi: VirtualMachineInstance, node_name: str) -> None:
        try:
            stored = await self.store.update(VMIS, encode_object(compute_placed_vmi(vmi, node_name, self.clock())),
                                             has_status_subresource=False)
            self.writes += 1
            self.placements += 1
            self.vmi_informer.assume(stored)  # counted on the node from the cache before release
            log.info("placed VMI %s on node %s", key, node_name)
        except (Conflict, NotFound):
            self.wake.set()  # changed meanwhile: decide again on the fresh copy from the watch
        except Exception as err:  # noqa: BLE001 - any store failure: decide again on the next round
            log.warning("placing VMI %s failed: %s", key, err)
            self.wake.set()
        finally:
            self.book.release(key)
            self.in_flight.release()

    async def _write_unschedulable(self, key: str, vmi: VirtualMachineInstance,
                                   status: VirtualMachineInstanceStatus) -> None:
        try:
            meta = vmi.metadata
            body = {"metadata": {"name": meta.name if meta else None, "namespace": meta.namespace if meta else None,
                                 "uid": meta.uid if meta else None,
                                 "resourceVersion": meta.resource_version if meta else None},
                    "status": encode_object(status)}
            stored = await self.store.update(VMIS, body, subresource="status")
            self.writes += 1
            self.vmi_informer.assume(stored)
            log.info("VMI %s is unschedulable: %s", key, (status.conditions or [])[-1].message)
        except (Conflict, NotFound):
            self.wake.set()
        except Exception as err:  # noqa: BLE001 - any store failure: tried again on the next round
            log.warning("marking VMI %s unschedulable failed: %s", key, err)
        finally:
            self.in_flight.release()
