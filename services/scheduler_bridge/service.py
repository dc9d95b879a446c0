"""scheduler-bridge's service loop on the embedded installation: VMIs in ``Scheduling`` get a node.

Owns the effectful side of placement: caches of all VMIs and Nodes (list + watch of the
store), the queue of VMIs waiting for a node (phase ``Scheduling``, no ``nodeName``, not
being deleted, oldest first), and the writes:

- placed: one compare-and-swap write of the whole VMI setting ``status.nodeName``, label
  ``kubevirt.io/nodeName``, phase ``Scheduled`` (with its transition timestamp) and
  dropping a ``PodScheduled=False`` condition (KubeVirt only shows that condition while
  the pod cannot be scheduled);
- unschedulable: condition ``PodScheduled`` ``False``/``Unschedulable`` with the
  scheduler's message (written only when it changes). The VM then shows
  ``ErrorUnschedulable``; the VMI is tried again whenever a Node or a VMI changes.

Crash safety: a placement is a CAS on the VMI's resourceVersion, so a VMI is never placed
twice, whether a bridge dies mid-write or two bridges race; after a restart everything is
read again from the store. Resources of VMIs being written are reserved in memory first
(kube-scheduler's "assume") so concurrent writes never overbook a node.
The decision itself is ``placement.plan_placement`` (pure).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from services.scheduler_bridge.placement import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    PlacementDecision,
    plan_placement,
)
from services.scheduler_bridge.resource_requests import Requests, compute_vmi_requests
from shared import tracing
from shared.errors import ApiError, Conflict, Gone, NotFound

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
NODES = "nodes"
NODE_NAME_LABEL = "kubevirt.io/nodeName"
POD_SCHEDULED = "PodScheduled"
UNSCHEDULABLE = "Unschedulable"


def _key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _rv(obj: dict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def is_waiting_for_node(vmi: dict) -> bool:
    """Phase ``Scheduling``, no ``status.nodeName``, no ``deletionTimestamp``."""
    status = vmi.get("status") or {}
    return (status.get("phase") == "Scheduling" and not status.get("nodeName")
            and not (vmi.get("metadata") or {}).get("deletionTimestamp"))


def holds_node(vmi: dict) -> str | None:
    """The node whose resources the VMI uses (set and not final), else None."""
    status = vmi.get("status") or {}
    if status.get("nodeName") and status.get("phase") not in ("Succeeded", "Failed"):
        return status["nodeName"]
    return None


def compute_placed_vmi(vmi: dict, node_name: str, now: datetime) -> dict:
    """The VMI after placement on ``node_name`` (see module docstring)."""
    placed = copy.deepcopy(vmi)
    meta = placed.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), NODE_NAME_LABEL: node_name}
    status = placed.setdefault("status", {})
    status["nodeName"] = node_name
    status["phase"] = "Scheduled"
    status["phaseTransitionTimestamps"] = [
        *(status.get("phaseTransitionTimestamps") or []),
        {"phase": "Scheduled", "phaseTransitionTimestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}]
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != POD_SCHEDULED]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)
    return placed


def compute_unschedulable_status(vmi: dict, message: str, now: datetime) -> dict | None:
    """The VMI status with ``PodScheduled=False/Unschedulable``, or None when it already says so."""
    status = copy.deepcopy(vmi.get("status") or {})
    conditions = status.get("conditions") or []
    current = next((c for c in conditions if c.get("type") == POD_SCHEDULED), None)
    if current and current.get("status") == "False" and current.get("reason") == UNSCHEDULABLE \
            and current.get("message") == message:
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": POD_SCHEDULED, "status": "False", "reason": UNSCHEDULABLE, "message": message,
                 "lastProbeTime": None,
                 "lastTransitionTime": current.get("lastTransitionTime", stamp)
                 if current and current.get("status") == "False" else stamp}
    status["conditions"] = [c for c in conditions if c.get("type") != POD_SCHEDULED] + [condition]
    return status


class SchedulerBridge:
    """Places VMIs from the store on registered Nodes until stopped.

    ``store``: ``shared.store.ObjectStore``; ``clock``: current UTC datetime; ``max_in_flight``:
    concurrent placement writes; ``heartbeat_timeout``: a Node silent for longer is skipped;
    ``retry_interval``: seconds between re-evaluations of unschedulable VMIs when nothing
    changes (heartbeats age out even without events).
    """

    def __init__(self, store, *, clock: Callable[[], datetime] | None = None, max_in_flight: int = 16,
                 heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT, retry_interval: float = 5.0):
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.heartbeat_timeout = heartbeat_timeout
        self.retry_interval = retry_interval
        self.vmis: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.assumed: dict[str, tuple[str, Requests]] = {}  # key -> (node, requests) being written
        self.in_flight = asyncio.Semaphore(max_in_flight)
        self.wake = asyncio.Event()
        self.placements = 0
        self.writes = 0
        self._tasks: list[asyncio.Task] = []
        self._writers: set[asyncio.Task] = set()
        self._requests: dict[str, Requests] = {}  # uid -> requests (a VMI's resources never change)
        self.synced = asyncio.Event()

    # -- caches ------------------------------------------------------------------------------
    def _apply(self, cache: dict[str, dict], event_type: str, obj: dict) -> None:
        key = _key(obj)
        if event_type == "DELETED":
            gone = cache.pop(key, None)
            self._requests.pop(((gone or {}).get("metadata") or {}).get("uid"), None)
        else:
            cached = cache.get(key)
            same_object = cached is not None and \
                (cached.get("metadata") or {}).get("uid") == (obj.get("metadata") or {}).get("uid")
            if same_object and _rv(cached) >= _rv(obj):
                return
            cache[key] = obj
        self.wake.set()

    async def _list_watch(self, plural: str, cache: dict[str, dict], ready: asyncio.Event) -> None:
        while True:
            try:
                items, rv = await self.store.list(plural)
                fresh = {_key(o): o for o in items}
                cache.clear()
                cache.update(fresh)
                self.wake.set()
                ready.set()
                async for event in self.store.watch(plural, resource_version=rv):
                    if event.type in ("ADDED", "MODIFIED", "DELETED"):
                        self._apply(cache, event.type, event.object)
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("%s watch expired; listing again", plural)
            except Exception as err:
                log.warning("%s watch failed (%s); listing again", plural, err)
                await asyncio.sleep(0.5)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        """List and watch VMIs and Nodes, then place in the background. Raises
        ``asyncio.TimeoutError`` (after stopping what it started) when the store cannot be
        listed within ``timeout`` seconds."""
        vmis_ready, nodes_ready = asyncio.Event(), asyncio.Event()
        spawn = asyncio.get_running_loop().create_task
        self._tasks = [spawn(self._list_watch(VMIS, self.vmis, vmis_ready), name="bridge-vmis"),
                       spawn(self._list_watch(NODES, self.nodes, nodes_ready), name="bridge-nodes")]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(vmis_ready.wait(), nodes_ready.wait())
        except asyncio.TimeoutError:
            await self.stop()
            raise
        self.synced.set()
        self._tasks += [spawn(self._loop(), name="bridge-loop"), spawn(self._ticker(), name="bridge-ticker")]

    async def stop(self) -> None:
        """Cancel the watches, the loop and in-flight writes, and wait until they ended
        (cancelling again every 2 s: a cancellation can be lost under ``asyncio.wait_for`` on
        Python 3.11, CPython gh-86296)."""
        pending = [t for t in [*self._tasks, *self._writers] if not t.done()]
        for _ in range(5):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, still = await asyncio.wait(pending, timeout=2.0)
            pending = list(still)
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
    def requests_of(self, vmi: dict) -> Requests:
        """``compute_vmi_requests`` memoized by VMI uid."""
        uid = (vmi.get("metadata") or {}).get("uid")
        if not uid:
            return compute_vmi_requests(vmi)
        request = self._requests.get(uid)
        if request is None:
            request = self._requests[uid] = compute_vmi_requests(vmi)
        return request

    def compute_placed(self) -> dict[str, Requests]:
        """Requests per node: VMIs holding a node, plus placements being written."""
        totals: dict[str, Requests] = {}
        for key, vmi in self.vmis.items():
            node = holds_node(vmi)
            if node and key not in self.assumed:
                totals[node] = totals.get(node, Requests(0, 0)) + self.requests_of(vmi)
        for node, request in self.assumed.values():
            totals[node] = totals.get(node, Requests(0, 0)) + request
        return totals

    def pending(self) -> list[dict]:
        """VMIs waiting for a node and not being written, oldest first."""
        waiting = [v for k, v in self.vmis.items() if k not in self.assumed and is_waiting_for_node(v)]
        waiting.sort(key=lambda v: ((v.get("metadata") or {}).get("creationTimestamp") or "", _rv(v)))
        return waiting

    async def schedule_pending(self) -> None:
        """One round: decide for every waiting VMI in order and start the writes."""
        waiting = self.pending()
        if not waiting:
            return
        placed = self.compute_placed()
        nodes = list(self.nodes.values())
        now = self.clock()
        for vmi in waiting:
            with tracing.object_span("scheduler-bridge", "place VirtualMachineInstance", vmi) as span:
                try:
                    decision = plan_placement(vmi, nodes, placed, now=now, heartbeat_timeout=self.heartbeat_timeout)
                except ApiError as err:  # an unparsable quantity: say so on the VMI
                    decision = PlacementDecision(None, f"0/{len(nodes)} nodes are available: {err}")
                if decision.node_name is not None:
                    span.set_attribute("k8s.node.name", decision.node_name)
                else:
                    tracing.mark_failed("Unschedulable", decision.message, span)
            key = _key(vmi)
            if decision.node_name is not None:
                request = self.requests_of(vmi)
                self.assumed[key] = (decision.node_name, request)
                placed[decision.node_name] = placed.get(decision.node_name, Requests(0, 0)) + request
                await self.in_flight.acquire()
                self._spawn_writer(self._write_placement(key, vmi, decision.node_name))
            else:
                status = compute_unschedulable_status(vmi, decision.message, now)
                if status is not None:
                    await self.in_flight.acquire()
                    self._spawn_writer(self._write_unschedulable(key, vmi, status))

    def _spawn_writer(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def _write_placement(self, key: str, vmi: dict, node_name: str) -> None:
        try:
            stored = await self.store.update(VMIS, compute_placed_vmi(vmi, node_name, self.clock()),
                                             has_status_subresource=False)
            self.writes += 1
            self.placements += 1
            self._apply(self.vmis, "MODIFIED", stored)
            log.info("placed VMI %s on node %s", key, node_name)
        except (Conflict, NotFound):
            self.wake.set()  # changed meanwhile: decide again on the fresh copy from the watch
        except Exception as err:
            log.warning("placing VMI %s failed: %s", key, err)
            self.wake.set()
        finally:
            self.assumed.pop(key, None)
            self.in_flight.release()

    async def _write_unschedulable(self, key: str, vmi: dict, status: dict) -> None:
        try:
            stored = await self.store.update(VMIS, {**vmi, "status": status}, subresource="status")
            self.writes += 1
            self._apply(self.vmis, "MODIFIED", stored)
            log.info("VMI %s is unschedulable: %s", key, status["conditions"][-1]["message"])
        except (Conflict, NotFound):
            self.wake.set()
        except Exception as err:
            log.warning("marking VMI %s unschedulable failed: %s", key, err)
        finally:
            self.in_flight.release()
