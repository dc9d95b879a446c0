"""Hypervisor features and clock.

Source: KubeVirt converter features/clock rules (``../shared/docs/kubevirt-api.md`` §7):
``<acpi/>`` unless ``features.acpi.enabled: false``; ``<apic/>``, ``<smm/>`` when present and
not disabled (a present FeatureState with ``enabled`` unset means on); ``<pvspinlock state>``;
``<vmport state='off'/>`` always on amd64. Clock ``utc`` (with ``offsetSeconds`` as
adjustment) or ``timezone``; timers with ``present``/``tickpolicy``/``track``.
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..schema import Clock, Domain, FeatureState, Timer


def _is_on(feature: dict | None) -> bool:
    return feature is not None and feature.get("enabled", True) is not False


def configure_features(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """ACPI (needed for ACPI shutdown), APIC, SMM, pvspinlock, vmport."""
    spec_features = vmi_view.domain_spec(vmi).get("features") or {}
    acpi = spec_features.get("acpi")
    domain.features.acpi = acpi is None or _is_on(acpi)
    domain.features.apic = _is_on(spec_features.get("apic"))
    domain.features.smm = domain.features.smm or _is_on(spec_features.get("smm"))
    if "pvspinlock" in spec_features:
        domain.features.pvspinlock = FeatureState(state="on" if _is_on(spec_features["pvspinlock"]) else "off")
    if (vmi_view.spec(vmi).get("architecture") or "amd64") == "amd64":
        domain.features.vmport = FeatureState(state="off")


TIMER_NAMES = {"hpet": "hpet", "kvm": "kvmclock", "pit": "pit", "rtc": "rtc", "hyperv": "hypervclock"}


def configure_clock(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """``<clock>``: UTC by default; timers as given."""
    clock_spec = vmi_view.domain_spec(vmi).get("clock") or {}
    clock = Clock(offset="utc")
    if clock_spec.get("timezone"):
        clock = Clock(offset="timezone", timezone=clock_spec["timezone"])
    elif (clock_spec.get("utc") or {}).get("offsetSeconds") is not None:
        clock.adjustment = str(clock_spec["utc"]["offsetSeconds"])
    for key, name in TIMER_NAMES.items():
        timer = (clock_spec.get("timer") or {}).get(key)
        if timer is None:
            continue
        if name == "kvmclock" and not ctx.is_kvm:
            continue  # kvmclock needs KVM
        clock.timers.append(Timer(name=name, present="no" if timer.get("present") is False else "yes",
                                  tickpolicy=timer.get("tickPolicy"), track=timer.get("track")))
    domain.clock = clock
