"""virt-handler's self-fence: a handler cut off from the store destroys its guests before the
control plane may replace them (the contract is :mod:`shared.node_fencing`, the decision
:mod:`services.virt_handler.fencing_decision`).

``SelfFence.run`` looks every check period at the heartbeat's ``last_beat``:

* ``FENCE``: the agent stops syncing (no guest is started, stopped or reported while the
  handler's view of the store may be stale), and every running domain this handler made is
  destroyed through the ``Hypervisor`` gateway (each remembered with its VMI's uid);
* ``HOLD``: the same sweep again, so a start that was in flight when the fence began is undone;
* ``LIFT`` (a heartbeat written after the fence): the VMIs are listed afresh into the agent's
  cache, each destroyed guest's VMI that is still the same and not final is written ``Failed``
  with reason ``NodeUnresponsive`` and a Warning Event ``SelfFenced``, then syncing resumes
  (the sync loop undefines the stopped domains and removes their files as for any final VMI).

A clean stop (:meth:`SelfFence.retire`) hands the duty over by removing the node's fence
annotation: its guests keep running for the next handler to adopt, and virt-controller, seeing no
fence, never declares them lost. While that write cannot reach the store the duty stays: once
``fence_after`` is reached the guests are destroyed before the process ends.

If libvirt does not answer, a guest cannot be destroyed; that is logged as an error and tried
again at every check (a host whose hypervisor hangs needs a fence from outside, e.g. a watchdog).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from services.virt_handler import status as vmi_status
from services.virt_handler.domain_events import compute_key_of_domain
from services.virt_handler.fencing_decision import FenceFacts, FenceStep, compute_check_period, compute_fence_step
from services.virt_handler.hypervisor_types import DomainNotFound, HypervisorError
from services.virt_handler.node import NodeHeartbeat
from services.virt_handler.sync_executor import VMIS
from shared.api.vocabulary import EventType, Phase, Reason, is_final_phase
from shared.errors import ApiError
from shared.node_fencing import FENCE_AFTER_ANNOTATION

log = logging.getLogger(__name__)

#: reason of the Event on a VMI whose guest the fence destroyed
SELF_FENCED = "SelfFenced"


class SelfFence:
    """The fence of one handler (module docstring).

    Args:
        heartbeat: the node's :class:`NodeHeartbeat` (``last_beat``, ``beat``).
        agent: the node's ``VmiAgent`` (its hypervisor, files, informer, executor, ``fenced`` flag).
        fence_after: seconds without an acknowledged heartbeat before the guests are destroyed
            (0: never; then this object does nothing).
        monotonic: clock of ``heartbeat.last_beat`` (seconds).
    """

    def __init__(self, heartbeat: NodeHeartbeat, agent: Any, *, fence_after: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat = heartbeat
        self.agent = agent
        self.fence_after = fence_after
        self.monotonic = monotonic
        self.period = compute_check_period(fence_after, heartbeat.interval)
        self.fenced_at: float | None = None
        self.destroyed: dict[str, str] = {}  # VMI key -> uid of the guest the fence destroyed
        self.fences = 0

    @property
    def is_fenced(self) -> bool:
        """Whether the guests are being kept destroyed and syncing is stopped."""
        return self.fenced_at is not None

    def facts(self) -> FenceFacts:
        """The decision's inputs now."""
        return FenceFacts(fence_after=self.fence_after, now=self.monotonic(), last_beat=self.heartbeat.last_beat,
                          fenced_at=self.fenced_at)

    async def run(self) -> None:
        """Check every period, forever (cancel the task to stop); a failed step is logged and tried
        again at the next check."""
        if self.fence_after <= 0:
            return
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.check()
            except (ApiError, HypervisorError, OSError, TimeoutError) as err:
                log.warning("self-fence of node %s: %s", self.heartbeat.node_name, str(err) or type(err).__name__)

    async def check(self) -> FenceStep:
        """One look: compute the step and do it. Returns the step."""
        step = compute_fence_step(self.facts())
        if step == FenceStep.FENCE:
            self.fenced_at = self.monotonic()
            self.agent.fenced = True
            self.fences += 1
            log.error("node %s could not write its heartbeat for %.1fs (--fence-after %gs): destroying its guests",
                      self.heartbeat.node_name, self.fenced_at - self.heartbeat.last_beat, self.fence_after)
            await self.sweep()
        elif step == FenceStep.HOLD:
            await self.sweep()
        elif step == FenceStep.LIFT:
            await self.lift()
        return step

    async def sweep(self) -> None:
        """Destroy every running domain this handler made (its VMI uid remembered)."""
        for domain in await self.agent.hv.list_domains():
            key = compute_key_of_domain(domain.name)
            if key is None or not domain.is_active or not self.agent.files.is_owned(domain):
                continue
            try:
                await self.agent.hv.destroy(domain.name)
            except DomainNotFound:
                continue
            except HypervisorError as err:
                log.error("self-fence could not destroy domain %s: %s", domain.name, err)
                continue
            self.destroyed[key] = domain.uid or ""
            log.error("self-fence destroyed domain %s (VMI %s)", domain.name, key)

    async def lift(self) -> None:
        """Read the VMIs afresh, report the destroyed guests' VMIs Failed, resume syncing."""
        items, version = await self.agent.store.list(VMIS)
        self.agent.informer.replace(items, version)
        for key, uid in sorted(self.destroyed.items()):
            obj = self.agent.vmis.get(key)
            meta = (obj or {}).get("metadata") or {}
            if obj is None or meta.get("uid") != uid or is_final_phase((obj.get("status") or {}).get("phase")):
                continue  # gone, replaced, or already declared lost by virt-controller
            await self.agent.executor.write_status(key, obj, _fenced_status(self.agent.clock))
            self.agent.record_event(obj, EventType.WARNING, SELF_FENCED,
                                    f"virt-handler on node {self.heartbeat.node_name} could not reach the store for "
                                    f"{self.fence_after:g}s and destroyed the guest")
        log.warning("node %s reaches the store again: %d fenced guest(s) reported, syncing resumes",
                    self.heartbeat.node_name, len(self.destroyed))
        self.destroyed.clear()
        self.fenced_at = None
        self.agent.fenced = False
        await self.agent.enqueue_everything()

    async def retire(self) -> None:
        """On a clean stop: remove the node's fence annotation (one heartbeat write), retried every
        period until it lands; if ``fence_after`` passes first, destroy the guests instead."""
        if self.fence_after <= 0:
            return
        while True:
            try:
                await self.heartbeat.beat(drop_annotations=(FENCE_AFTER_ANNOTATION,))
                return
            except (ApiError, OSError, TimeoutError) as err:
                log.warning("node %s cannot hand its fence over yet: %s", self.heartbeat.node_name,
                            str(err) or type(err).__name__)
            if compute_fence_step(self.facts()) in (FenceStep.FENCE, FenceStep.HOLD):
                self.fenced_at = self.fenced_at or self.monotonic()
                self.agent.fenced = True
                await self.sweep()
                return
            await asyncio.sleep(self.period)


def _fenced_status(clock: Callable[[], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def compute(vmi: dict[str, Any]) -> dict[str, Any]:
        status = vmi_status.compute_final_status(vmi, Phase.FAILED, now=clock())
        return {**status, "reason": Reason.NODE_UNRESPONSIVE}
    return compute
