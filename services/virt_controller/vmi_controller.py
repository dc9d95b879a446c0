"""VMI controller: the phase transitions the control plane owns on the embedded installation.

Rules are the pure :func:`vmi_lifecycle.compute_vmi_update`; this module feeds it from the
caches and writes the result with one compare-and-swap update of the whole object (finalizers
and status together, so a VMI start costs one controller write). Node heartbeats are checked
every ``heartbeat_timeout / 4`` seconds by :meth:`VMIController.monitor_nodes`, which enqueues
the VMIs of nodes that stopped reporting (a stopped heartbeat makes no event by itself).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.errors import NotFound
from services.virt_controller import phases
from services.virt_controller.clock import Clock, SystemClock
from shared.informer import Informer, object_key
from services.virt_controller.vmi_lifecycle import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    compute_vmi_update,
    is_node_responsive,
)
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
ON_NODE_PHASES = (phases.SCHEDULED, phases.RUNNING, phases.UNKNOWN)


class VMIController:
    """Reconciles VMI phases.

    Args:
        store: ObjectStore.
        vmis, nodes: informers of ``virtualmachineinstances`` and ``nodes``.
        heartbeat_timeout: seconds without a node heartbeat before its VMIs become Unknown.
    """

    def __init__(self, store: Any, vmis: Informer, nodes: Informer, queue: WorkQueue | None = None, *,
                 clock: Clock | None = None, heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT) -> None:
        self.store = store
        self.vmis = vmis
        self.nodes = nodes
        self.queue = queue or WorkQueue(name="vmi")
        self.clock = clock or SystemClock()
        self.heartbeat_timeout = heartbeat_timeout
        vmis.add_handler(self._on_vmi)
        nodes.add_handler(self._on_node)

    def _on_vmi(self, old: dict | None, new: dict | None) -> None:
        if new is not None:
            self.queue.add(object_key(new))

    def _on_node(self, old: dict | None, new: dict | None) -> None:
        node = new or old
        self.enqueue_node_vmis(node["metadata"]["name"])

    def enqueue_node_vmis(self, node_name: str) -> None:
        """Queue the VMIs placed on ``node_name``."""
        for vmi in self.vmis.items():
            if (vmi.get("status") or {}).get("nodeName") == node_name:
                self.queue.add(object_key(vmi))

    def enqueue_all(self) -> None:
        for key in self.vmis.keys():
            self.queue.add(key)

    def _node_responsive(self, vmi: dict) -> bool:
        node_name = (vmi.get("status") or {}).get("nodeName")
        if not node_name:
            return True
        return is_node_responsive(self.nodes.get(node_name), self.clock.now(), self.heartbeat_timeout)

    async def reconcile(self, key: str) -> None:
        """Write the VMI's next controller-owned state, if any. Conflict propagates (requeue)."""
        vmi = self.vmis.get(key)
        if vmi is None:
            return
        wanted = compute_vmi_update(vmi, node_responsive=self._node_responsive(vmi), now=self.clock.now())
        if wanted is None:
            return
        try:
            stored = await self.store.update(VMIS, wanted, has_status_subresource=False)
        except NotFound:
            stored = None
        self.vmis.assume_written(vmi, stored)

    def check_heartbeats(self) -> int:
        """Queue VMIs on nodes that stopped reporting; returns how many were queued."""
        now = self.clock.now()
        stale: dict[str, bool] = {}
        queued = 0
        for vmi in self.vmis.items():
            status = vmi.get("status") or {}
            node_name = status.get("nodeName")
            if not node_name or status.get("phase") not in ON_NODE_PHASES:
                continue
            if node_name not in stale:
                stale[node_name] = not is_node_responsive(self.nodes.get(node_name), now,
                                                          self.heartbeat_timeout)
            needs_action = status.get("phase") != phases.UNKNOWN or phases.is_marked_for_deletion(vmi)
            if stale[node_name] and needs_action:
                self.queue.add(object_key(vmi))
                queued += 1
        return queued

    async def monitor_nodes(self) -> None:
        """Run :meth:`check_heartbeats` every ``heartbeat_timeout / 4`` seconds, forever."""
        period = max(self.heartbeat_timeout / 4, 0.1)
        while True:
            await asyncio.sleep(period)
            self.check_heartbeats()
