"""VMI controller: the phase transitions the control plane owns on the embedded installation.

Rules are the pure :func:`vmi_lifecycle.compute_vmi_update`; this module feeds it from the
caches and writes the result with one compare-and-swap update of the whole object (finalizers
and status together, so a VMI start costs one controller write). Node heartbeats are checked
every ``heartbeat_timeout / 8`` seconds by :meth:`VMIController.monitor_nodes`, which enqueues
the VMIs of nodes that stopped reporting or are lost (:mod:`node_loss`; a stopped heartbeat makes
no event by itself). The
VMIs of a node come from an index (:class:`key_index.KeyIndex` by ``status.nodeName``), so a
node event or a heartbeat check costs the node's VMIs, not a scan of every VMI.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.virt_controller import phases
from shared.clock import Clock, SystemClock
from services.virt_controller.key_index import KeyIndex
from shared.api.decoding import encode_object
from services.virt_controller.node_loss import NodeHealth, compute_node_health
from services.virt_controller.vmi_lifecycle import compute_vmi_update
from shared.node_fencing import DEFAULT_FENCE_MARGIN, DEFAULT_HEARTBEAT_TIMEOUT
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import Phase
from shared.errors import NotFound
from shared.informer import Informer, key_of
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

VMIS = "virtualmachineinstances"
ON_NODE_PHASES = (Phase.SCHEDULED, Phase.RUNNING, Phase.UNKNOWN)


def node_of(vmi: VirtualMachineInstance) -> str | None:
    """The node a VMI is placed on (``status.nodeName``), None before placement."""
    return (vmi.status.node_name if vmi.status is not None else None) or None


class VMIController:
    """Reconciles VMI phases.

    Args:
        store: ObjectStore.
        vmis: typed informer of ``virtualmachineinstances`` (``decode=VirtualMachineInstance``).
        nodes: informer of ``nodes`` (JSON-ready dicts).
        heartbeat_timeout: seconds without a node heartbeat before the VMIs of a fencing node
            become Failed (of a node that does not fence: Unknown).
        fence_margin: seconds a node's advertised ``fence_after`` must stay below
            ``heartbeat_timeout`` for its silence to count as fenced (:mod:`shared.node_fencing`).
    """

    def __init__(self, store: Any, vmis: Informer[VirtualMachineInstance], nodes: Informer[dict[str, Any]],
                 queue: WorkQueue | None = None, *, clock: Clock | None = None,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
                 fence_margin: float = DEFAULT_FENCE_MARGIN) -> None:
        self.store = store
        self.vmis = vmis
        self.nodes = nodes
        self.queue = queue or WorkQueue(name="vmi")
        self.clock = clock or SystemClock()
        self.heartbeat_timeout = heartbeat_timeout
        self.fence_margin = fence_margin
        self.by_node: KeyIndex[VirtualMachineInstance] = KeyIndex(vmis, node_of)
        vmis.add_handler(self._on_vmi)
        nodes.add_handler(self._on_node)

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        if new is not None:
            self.queue.add(key_of(new))

    def _on_node(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Queue the node's VMIs unless the node was responsive before and still is: a
        heartbeat of a healthy node (most node events) changes nothing for its VMIs."""
        node = new or old
        if node is None:
            return
        if old is not None and new is not None and self.health_of(new) == NodeHealth.RESPONSIVE \
                and self.health_of(old) == NodeHealth.RESPONSIVE:
            return
        self.enqueue_node_vmis(node["metadata"]["name"])

    def health_of(self, node: dict[str, Any] | None) -> NodeHealth:
        """The health of ``node`` (JSON-ready Node, None: deleted) now."""
        return compute_node_health(node, self.clock.now(), heartbeat_timeout=self.heartbeat_timeout,
                                   margin=self.fence_margin)

    def enqueue_node_vmis(self, node_name: str) -> None:
        """Queue the VMIs placed on ``node_name``."""
        for key in self.by_node.keys(node_name):
            self.queue.add(key)

    def enqueue_all(self) -> None:
        """Queue every cached VMI (after gaining leadership)."""
        for key in self.vmis.keys():
            self.queue.add(key)

    def _node_health(self, vmi: VirtualMachineInstance) -> NodeHealth:
        node_name = node_of(vmi)
        if not node_name:
            return NodeHealth.RESPONSIVE
        return self.health_of(self.nodes.get(node_name))

    async def reconcile(self, key: str) -> None:
        """Write the VMI's next controller-owned state, if any. Conflict propagates (requeue).

        One CAS update of the whole object (finalizers and status together)."""
        vmi = self.vmis.get(key)
        if vmi is None:
            return
        wanted = compute_vmi_update(vmi, node_health=self._node_health(vmi), now=self.clock.now())
        if wanted is None:
            return
        try:
            stored = await self.store.update(VMIS, encode_object(wanted), has_status_subresource=False)
        except NotFound:
            stored = None
        self.vmis.assume_written(vmi, stored)

    def check_heartbeats(self) -> int:
        """Queue the VMIs that must change because their node went silent (to ``Unknown``) or
        was lost (to ``Failed``); returns how many were queued.

        Only the nodes that have VMIs are checked, and only the VMIs of silent nodes are read."""
        queued = 0
        for node_name in self.by_node.values():
            health = self.health_of(self.nodes.get(node_name))
            if health == NodeHealth.RESPONSIVE:
                continue
            for key in self.by_node.keys(node_name):
                vmi = self.vmis.get(key)
                if vmi is None or phases.phase_of(vmi) not in ON_NODE_PHASES:
                    continue
                if health == NodeHealth.LOST or phases.phase_of(vmi) != Phase.UNKNOWN:
                    self.queue.add(key)
                    queued += 1
        return queued

    async def monitor_nodes(self) -> None:
        """Run :meth:`check_heartbeats` every ``heartbeat_timeout / 8`` seconds, forever (the
        period adds to how late a lost node's VMIs become Failed, never makes it earlier)."""
        period = max(self.heartbeat_timeout / 8, 0.1)
        while True:
            await asyncio.sleep(period)
            self.check_heartbeats()
