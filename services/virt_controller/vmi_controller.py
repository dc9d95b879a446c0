"""VMI controller: the phase transitions the control plane owns on the embedded installation.

Rules are the pure :func:`vmi_lifecycle.compute_vmi_update`; this module feeds it from the
caches and writes the result with one compare-and-swap update of the whole object (finalizers
and status together, so a VMI start costs one controller write). Node heartbeats are checked
every ``heartbeat_timeout / 4`` seconds by :meth:`VMIController.monitor_nodes`, which enqueues
the VMIs of nodes that stopped reporting (a stopped heartbeat makes no event by itself). The
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
from services.virt_controller.vmi_lifecycle import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    compute_vmi_update,
    is_node_responsive,
)
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
        heartbeat_timeout: seconds without a node heartbeat before its VMIs become Unknown.
    """

    def __init__(self, store: Any, vmis: Informer[VirtualMachineInstance], nodes: Informer[dict[str, Any]],
                 queue: WorkQueue | None = None, *, clock: Clock | None = None,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT) -> None:
        self.store = store
        self.vmis = vmis
        self.nodes = nodes
        self.queue = queue or WorkQueue(name="vmi")
        self.clock = clock or SystemClock()
        self.heartbeat_timeout = heartbeat_timeout
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
        now = self.clock.now()
        if old is not None and new is not None and is_node_responsive(new, now, self.heartbeat_timeout) \
                and is_node_responsive(old, now, self.heartbeat_timeout):
            return
        self.enqueue_node_vmis(node["metadata"]["name"])

    def enqueue_node_vmis(self, node_name: str) -> None:
        """Queue the VMIs placed on ``node_name``."""
        for key in self.by_node.keys(node_name):
            self.queue.add(key)

    def enqueue_all(self) -> None:
        """Queue every cached VMI (after gaining leadership)."""
        for key in self.vmis.keys():
            self.queue.add(key)

    def _node_responsive(self, vmi: VirtualMachineInstance) -> bool:
        node_name = node_of(vmi)
        if not node_name:
            return True
        return is_node_responsive(self.nodes.get(node_name), self.clock.now(), self.heartbeat_timeout)

    async def reconcile(self, key: str) -> None:
        """Write the VMI's next controller-owned state, if any. Conflict propagates (requeue).

        One CAS update of the whole object (finalizers and status together)."""
        vmi = self.vmis.get(key)
        if vmi is None:
            return
        wanted = compute_vmi_update(vmi, node_responsive=self._node_responsive(vmi), now=self.clock.now())
        if wanted is None:
            return
        try:
            stored = await self.store.update(VMIS, encode_object(wanted), has_status_subresource=False)
        except NotFound:
            stored = None
        self.vmis.assume_written(vmi, stored)

    def check_heartbeats(self) -> int:
        """Queue VMIs on nodes that stopped reporting; returns how many were queued.

        Only the nodes that have VMIs are checked, and only the VMIs of stale nodes are read."""
        now = self.clock.now()
        queued = 0
        for node_name in self.by_node.values():
            if is_node_responsive(self.nodes.get(node_name), now, self.heartbeat_timeout):
                continue
            for key in self.by_node.keys(node_name):
                vmi = self.vmis.get(key)
                if vmi is None or phases.phase_of(vmi) not in ON_NODE_PHASES:
                    continue
                if phases.phase_of(vmi) != Phase.UNKNOWN or phases.is_marked_for_deletion(vmi):
                    self.queue.add(key)
                    queued += 1
        return queued

    async def monitor_nodes(self) -> None:
        """Run :meth:`check_heartbeats` every ``heartbeat_timeout / 4`` seconds, forever."""
        period = max(self.heartbeat_timeout / 4, 0.1)
        while True:
            await asyncio.sleep(period)
            self.check_heartbeats()
