"""Which ``<domain type>`` this node's guests get: ``test``, ``kvm`` or ``qemu`` (TCG).

``auto`` decides from the libvirt URI (``test`` for ``test://`` and ``test+unix://``) and the KVM probe (``kvm`` when
usable, else ``qemu``, KubeVirt's ``useEmulation``). The probe's answer is recorded in
``<state_dir>/domain-type`` so a restarted handler does not probe again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from services.virt_handler import kvm_probe
from services.virt_handler.agent import compute_domain_type, is_test_driver_uri

log = logging.getLogger("kubevirt.virt_handler")

#: File in the handler's state directory holding the probe's answer.
ACCELERATION_RECORD = "domain-type"


class DomainTypeSettings(Protocol):
    """What :func:`decide_domain_type` reads from the handler's settings."""

    @property
    def domain_type(self) -> str: ...

    @property
    def libvirt_uri(self) -> str: ...

    @property
    def state_dir(self) -> Path: ...


def decide_domain_type(settings: DomainTypeSettings) -> str:
    """The ``<domain type>`` for this node (see module docstring). The KVM probe's answer is
    kept in ``<state_dir>/domain-type``: a restarted handler does not probe again (on this
    machine a probe's QEMU can stay stuck in the kernel, so probes must be rare)."""
    if settings.domain_type != "auto":
        return settings.domain_type
    if is_test_driver_uri(settings.libvirt_uri):
        return "test"
    record = settings.state_dir / ACCELERATION_RECORD
    try:
        recorded = record.read_text().strip()
    except OSError:
        recorded = ""
    if recorded in ("kvm", "qemu"):
        return recorded
    decided = _probe_domain_type(settings.libvirt_uri)
    try:
        record.write_text(decided + "\n")
    except OSError as err:
        log.warning("cannot record the domain type in %s: %s", record, err)
    return decided


def _probe_domain_type(libvirt_uri: str) -> str:
    try:
        usable = bool(kvm_probe.is_kvm_usable())
    except Exception as err:  # a probe that fails means no KVM
        log.info("KVM probe failed (%s); using TCG", err)
        usable = False
    return compute_domain_type(libvirt_uri, usable)
