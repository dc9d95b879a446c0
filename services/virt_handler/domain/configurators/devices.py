"""Memory balloon, RNG, input devices and watchdog.

Source: KubeVirt rules (``../shared/docs/kubevirt-api.md`` §7): ``<memballoon
model='virtio-non-transitional' freePageReporting='on'><stats period='10'/>`` unless
``autoattachMemBalloon: false`` (then ``model='none'``); ``<rng model='virtio-...'>`` with a
``/dev/urandom`` random backend only when ``devices.rng`` is present; ``inputs[]`` ->
``<input type='tablet' bus='usb|virtio'>`` with alias ``ua-<name>`` (defaults: tablet, usb);
``watchdog.i6300esb`` -> ``<watchdog model='i6300esb' action>`` (action default ``reset``).
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..errors import DomainConversionError
from ..schema import Alias, Domain, Input, Memballoon, Rng, RngBackend, Stats, Watchdog


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


def configure_inputs(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """One ``<input>`` per ``devices.inputs[]`` entry (only tablets exist in KubeVirt)."""
    for i, spec_input in enumerate(vmi_view.devices(vmi).get("inputs") or []):
        kind, bus = spec_input.get("type") or "tablet", spec_input.get("bus") or "usb"
        if kind != "tablet" or bus not in ("usb", "virtio"):
            raise DomainConversionError(
                "InvalidSpec", f"spec.domain.devices.inputs[{i}]: only tablet on usb or virtio is supported")
        domain.devices.inputs.append(Input(type=kind, bus=bus, alias=Alias(name=f"ua-{spec_input['name']}")))


def configure_watchdog(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """The i6300esb watchdog when ``devices.watchdog`` asks for it (diag288 is s390x only)."""
    watchdog = vmi_view.devices(vmi).get("watchdog")
    if not watchdog:
        return
    if "i6300esb" not in watchdog:
        raise DomainConversionError("InvalidSpec", "spec.domain.devices.watchdog: only i6300esb exists on amd64")
    action = (watchdog.get("i6300esb") or {}).get("action") or "reset"
    domain.devices.watchdog = Watchdog(model="i6300esb", action=action, alias=Alias(name=f"ua-{watchdog['name']}"))
