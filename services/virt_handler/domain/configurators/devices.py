"""Memory balloon and RNG.

Source: KubeVirt rules (``../shared/docs/kubevirt-api.md`` §7): ``<memballoon
model='virtio-non-transitional' freePageReporting='on'><stats period='10'/>`` unless
``autoattachMemBalloon: false`` (then ``model='none'``); ``<rng model='virtio-...'>`` with a
``/dev/urandom`` random backend only when ``devices.rng`` is present.
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..schema import Domain, Memballoon, Rng, RngBackend, Stats


def _virtio_model(vmi: dict) -> str:
    return "virtio-transitional" if vmi_view.devices(vmi).get("useVirtioTransitional") else "virtio-non-transitional"


def configure_memballoon(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """The balloon with stats every ``ctx.mem_balloon_stats_period`` s, or ``model='none'``."""
    if not vmi_view.is_enabled(vmi_view.devices(vmi).get("autoattachMemBalloon"), True):
        domain.devices.memballoon = Memballoon(model="none")
        return
    domain.devices.memballoon = Memballoon(model=_virtio_model(vmi), free_page_reporting="on",
                                           stats=Stats(period=ctx.mem_balloon_stats_period))


def configure_rng(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """A virtio RNG fed from the host's /dev/urandom when ``spec.domain.devices.rng`` is set."""
    if "rng" in vmi_view.devices(vmi):
        domain.devices.rngs.append(Rng(model=_virtio_model(vmi), backend=RngBackend(path="/dev/urandom")))
