"""Per-VMI libvirt statistics for ``/metrics``, refreshed off the scrape path."""

from __future__ import annotations

import asyncio
import logging

from services.virt_handler.agent import compute_key_of_domain
from services.virt_handler.hypervisor import Hypervisor, HypervisorError

log = logging.getLogger("kubevirt.virt_handler")


class DomainStatsSnapshot:
    """Per-VMI libvirt statistics refreshed every ``interval`` s off the scrape path (a scrape
    never waits on libvirt); registered as a ``shared.metrics`` VMI stats source. Samples are
    keyed ``(node, namespace, vmi)``."""

    def __init__(self, hypervisor: Hypervisor, node_name: str, interval: float):
        self.hypervisor = hypervisor
        self.node_name = node_name
        self.interval = interval
        self.samples: dict[tuple[str, str, str], dict[str, float]] = {}

    def __call__(self) -> dict[tuple[str, str, str], dict[str, float]]:
        return self.samples

    async def run(self) -> None:
        """Refresh :attr:`samples` every ``interval`` s until cancelled."""
        while True:
            try:
                stats = await self.hypervisor.domain_stats()
                samples = {}
                for name, fields in stats.items():
                    key = compute_key_of_domain(name)
                    if key is not None and fields:
                        namespace, vmi = key.split("/", 1)
                        samples[(self.node_name, namespace, vmi)] = fields
                self.samples = samples
            except HypervisorError as err:
                log.debug("domain statistics unavailable: %s", err)
            await asyncio.sleep(self.interval)
