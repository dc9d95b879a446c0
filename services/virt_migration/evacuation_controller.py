"""The evacuation controller: drained Nodes (taint ``nodeDrainTaintKey``) get their VMIs moved.

Feeds :func:`evacuation.compute_evacuation` from the caches, one work-queue key per node: a node
is queued when it changes while drained, when one of its VMIs changes, when a VMIM of one of its
VMIs ends, and when the KubeVirt object changes. It writes ``status.evacuationNodeName`` (CAS on
``/status``), creates the evacuation VMIMs (which then wait in Pending for the limits and for
their backoff) with a ``SuccessfulCreate`` Event on the VMI, and reports once per VMI and node a
VMI that cannot leave (Warning Event). ``kubevirt_vmi_non_evictable`` is counted at scrape time
(:meth:`EvacuationController.non_evictable`).
"""

from __future__ import annotations

import logging

from services.virt_migration.controller import MigrationController
from services.virt_migration.evacuation import (
    NOT_EVICTABLE_MESSAGE,
    NOT_EVICTABLE_REASON,
    compute_evacuation,
    compute_evacuation_vmim,
    is_drained,
    is_non_evictable,
)
from services.virt_migration.executor import MigrationWriter
from services.virt_migration.phase_decision import phase_of
from services.virt_migration.siblings import vmi_key_of
from services.virt_migration.vmi_writes import compute_evacuation_mark
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migration_vocabulary import is_final_migration_phase
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import EventType, is_final_phase
from shared.errors import ApiError
from shared.informer import Informer, key_of
from shared.workqueue import WorkQueue

log = logging.getLogger(__name__)

#: KubeVirt's evacuation Event reasons (pkg/virt-controller/watch/drain/evacuation)
SUCCESSFUL_CREATE = "SuccessfulCreate"
FAILED_CREATE = "FailedCreate"


def node_of(vmi: VirtualMachineInstance | None) -> str | None:
    """``status.nodeName`` (None before placement)."""
    return (vmi.status.node_name if vmi is not None and vmi.status is not None else None) or None


class EvacuationController:
    """Reconciles drained nodes.

    Args:
        nodes: informer of ``nodes`` (dicts); vmis, vmims: typed informers.
        migrations: the migration controller (cluster configuration, VMIM index).
        writer: the store edge.
    """

    def __init__(self, nodes: Informer[dict], vmis: Informer[VirtualMachineInstance],
                 vmims: Informer[VirtualMachineInstanceMigration], migrations: MigrationController,
                 writer: MigrationWriter) -> None:
        self.nodes = nodes
        self.vmis = vmis
        self.vmims = vmims
        self.migrations = migrations
        self.writer = writer
        self.queue = WorkQueue(name="evacuation")
        self.by_node: dict[str, set[str]] = {}
        self._reported: set[tuple[str, str]] = set()  # (vmi uid, node) told as not evictable
        vmis.add_handler(self._on_vmi)
        nodes.add_handler(self._on_node)
        vmims.add_handler(self._on_vmim)
        migrations.kubevirts.add_handler(lambda _old, _new: self.enqueue_all())

    def _on_vmi(self, old: VirtualMachineInstance | None, new: VirtualMachineInstance | None) -> None:
        old_node, new_node = node_of(old), node_of(new)
        if old is not None and old_node and old_node != new_node:
            keys = self.by_node.get(old_node)
            if keys is not None:
                keys.discard(key_of(old))
                if not keys:
                    del self.by_node[old_node]
        if new is not None and new_node:
            self.by_node.setdefault(new_node, set()).add(key_of(new))
        elif new is None and old is not None and old_node:
            self.by_node.get(old_node, set()).discard(key_of(old))
        for node in {old_node, new_node}:
            if node:
                self._enqueue_if_drained(node)

    def _on_node(self, old: dict | None, new: dict | None) -> None:
        if new is not None:
            self._enqueue_if_drained(new["metadata"]["name"])

    def _on_vmim(self, old: VirtualMachineInstanceMigration | None,
                 new: VirtualMachineInstanceMigration | None) -> None:
        if new is None or (is_final_migration_phase(phase_of(new)) and
                           (old is None or not is_final_migration_phase(phase_of(old)))):
            vmim = new or old
            if vmim is not None:
                node = node_of(self.vmis.get(vmi_key_of(vmim)))
                if node:
                    self._enqueue_if_drained(node)

    def _enqueue_if_drained(self, node_name: str) -> None:
        if is_drained(self.nodes.get(node_name), self.migrations.cluster_config().node_drain_taint_key):
            self.queue.add(node_name)

    def enqueue_all(self) -> None:
        """Queue every drained node (after gaining leadership, or a configuration change)."""
        for name in self.nodes.keys():
            self._enqueue_if_drained(name)

    def in_flight(self) -> set[str]:
        """``namespace/name`` of every VMI that has a non-final VMIM."""
        return {vmi_key_of(m) for m in self.vmims.items() if not is_final_migration_phase(phase_of(m))}

    async def reconcile(self, node_name: str) -> None:
        """Mark, migrate and report the VMIs of ``node_name`` while it is drained."""
        cluster = self.migrations.cluster_config()
        if not is_drained(self.nodes.get(node_name), cluster.node_drain_taint_key):
            return
        on_node = [v for v in (self.vmis.get(k) for k in sorted(self.by_node.get(node_name, ()))) if v is not None]
        plan = compute_evacuation(node_name, on_node, self.in_flight(), cluster.eviction_strategy)
        for vmi in plan.mark:
            await self.writer.write_vmi(vmi, lambda v: compute_evacuation_mark(v, node_name), status_only=True)
        for vmi in plan.migrate:
            try:
                created = await self.writer.create_vmim(compute_evacuation_vmim(vmi, node_name))
            except ApiError as err:
                await self.writer.record(vmi, "VirtualMachineInstance", EventType.WARNING, FAILED_CREATE,
                                         f"Error creating a Migration: {err}")
                raise
            name = created.metadata.name if created is not None and created.metadata is not None else ""
            await self.writer.record(vmi, "VirtualMachineInstance", EventType.NORMAL, SUCCESSFUL_CREATE,
                                     f"Created Migration {name}")
        for vmi in plan.blocked:
            uid = vmi.metadata.uid if vmi.metadata is not None else None
            if (uid or "", node_name) in self._reported:
                continue
            self._reported.add((uid or "", node_name))
            await self.writer.record(vmi, "VirtualMachineInstance", EventType.WARNING, NOT_EVICTABLE_REASON,
                                     NOT_EVICTABLE_MESSAGE.format(vmi=key_of(vmi)))

    def non_evictable(self) -> dict[tuple[str, str, str], float]:
        """``kubevirt_vmi_non_evictable`` values: (node, namespace, name) -> 1/0 for every VMI not final."""
        strategy = self.migrations.cluster_config().eviction_strategy
        values: dict[tuple[str, str, str], float] = {}
        for vmi in self.vmis.items():
            if vmi.metadata is None or vmi.status is None or is_final_phase(vmi.status.phase):
                continue
            labels = (vmi.status.node_name or "", vmi.metadata.namespace or "", vmi.metadata.name or "")
            values[labels] = 1.0 if is_non_evictable(vmi, strategy) else 0.0
        return values
