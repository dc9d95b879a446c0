"""The handler's gateway to libvirt: the only package that imports ``libvirt``.

Owns one libvirt connection per ``Hypervisor``: every blocking libvirt call runs
in a bounded thread pool under a per-call timeout (one hung domain cannot freeze
the handler's asyncio loop), libvirt errors become ``HypervisorError`` with a
stable ``reason`` at this boundary, and libvirt's lifecycle and guest-agent
events arrive as an async iterator of ``LifecycleEvent``.

Events: libvirt's default event implementation runs on one native thread per
process (the pattern of Nova's ``host.py`` and vdsm's ``libvirtconnection``);
callbacks hand events to the owning asyncio loop with ``call_soon_threadsafe``.
This works with any number of connections and asyncio loops in one process,
which ``libvirtaio`` (bound to a single loop) does not.

States and reasons use KubeVirt's names (``pkg/virt-launcher/virtwrap/api``:
``Running``, ``Paused``, ``Shutoff``, ``Crashed``...; ``Shutdown``, ``Destroyed``,
``Crashed``, ``Failed``, ``User``, ``IOError``...), so the phase rules in
``status.py`` read like KubeVirt's. Domain XML is computed elsewhere
(``services.virt_handler.domain``); this module passes it through.

Modules: ``codes`` (libvirt numbers -> KubeVirt names), ``connection`` (connection, event
thread, calls off the loop), ``operations`` (``Hypervisor``: the domain operations). The
records it hands out and its errors live in ``services.virt_handler.hypervisor_types``
(no ``libvirt`` import), re-exported here.
"""

from services.virt_handler.hypervisor.codes import (
    DOMAIN_STATES,
    LIFECYCLE_EVENTS,
    STATE_REASONS,
    STOPPED_DETAILS,
    map_libvirt_error,
)
from services.virt_handler.hypervisor.operations import Hypervisor
from services.virt_handler.hypervisor_types import (
    KUBEVIRT_METADATA_NS,
    DomainInfo,
    DomainNotFound,
    EventSubscription,
    HypervisorError,
    HypervisorTimeout,
    LifecycleEvent,
    NodeInfo,
    compute_flat_stats,
)

__all__ = ["DOMAIN_STATES", "KUBEVIRT_METADATA_NS", "LIFECYCLE_EVENTS", "STATE_REASONS", "STOPPED_DETAILS",
           "DomainInfo", "DomainNotFound", "EventSubscription", "Hypervisor", "HypervisorError",
           "HypervisorTimeout", "LifecycleEvent", "NodeInfo", "compute_flat_stats", "map_libvirt_error"]
