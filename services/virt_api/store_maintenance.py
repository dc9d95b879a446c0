"""virt-api's store maintenance: compaction and garbage collection, on one replica at a time.

Kubernetes splits what a deletion leaves behind: kube-apiserver compacts its store periodically
(``--etcd-compaction-interval``) and kube-controller-manager's garbage collector deletes the
dependents of owners that are gone. Here both are :meth:`shared.store.ObjectStore.maintain`, run
by virt-api because its NATS user is the store's gatekeeper (writes every bucket, may purge the
buckets' streams: :data:`shared.nats_auth.MAINTAINERS`). Every virt-api replica serves the API,
but only the holder of the Lease ``kubevirt/virt-api-store-maintenance``
(:class:`shared.leader.LeaderElector`) maintains: two passes at once would only race each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.leader import LeaderElector

#: The Lease naming the replica that maintains the store.
LEASE_NAME = "virt-api-store-maintenance"
LEASE_NAMESPACE = "kubevirt"


@dataclass(frozen=True)
class MaintenanceSettings:
    """``interval``: seconds between passes (garbage collection every pass);
    ``compaction_interval``: seconds between compactions; ``keep_deleted``: seconds a delete
    marker is kept before compaction purges it (watches from older revisions get 410)."""

    interval: float = 30.0
    compaction_interval: float = 300.0
    keep_deleted: float = 3600.0


class StoreMaintenance:
    """One virt-api replica's part in the store maintenance: :meth:`run` takes part in the
    election and maintains while it holds the Lease. ``store`` is an ObjectStore connected as
    virt-api (or admin); ``identity`` this replica's Lease holder name; the lease timings are
    :class:`shared.leader.LeaderElector`'s (seconds)."""

    def __init__(self, store: Any, identity: str, settings: MaintenanceSettings, *, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
        self.store = store
        self.settings = settings
        self.elector = LeaderElector(store, identity, name=LEASE_NAME, namespace=LEASE_NAMESPACE,
                                     lease_duration=lease_duration, renew_deadline=renew_deadline,
                                     retry_period=retry_period)

    @property
    def is_leader(self) -> bool:
        """Whether this replica maintains the store now."""
        return self.elector.is_leader

    async def lead(self) -> None:
        """Maintain until cancelled (the lease is lost or the process stops)."""
        await self.store.run_maintenance(interval=self.settings.interval,
                                         compaction_interval=self.settings.compaction_interval,
                                         keep_deleted=self.settings.keep_deleted)

    async def run(self) -> None:
        """Take part in the election until cancelled; the lease is released on the way out."""
        await self.elector.run(self.lead)
