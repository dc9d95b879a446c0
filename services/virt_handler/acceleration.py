"""What the VMI tells its user about how its guest is accelerated.

KubeVirt's virt-handler records no such field (``useEmulation`` only changes the domain type), so
kubevirt-py adds one visible signal: the annotation :data:`ANNOTATION` on the VMI, written by the
handler when it starts the guest, with the value from :func:`compute_acceleration` of the libvirt
domain type it used (``kvm`` -> ``kvm``; ``qemu`` -> ``tcg``, QEMU's software emulator; ``test``
-> ``test`` for libvirt's test driver). An annotation, not a status field: status fields must be
KubeVirt's (shared/api), and metadata belongs to nobody's spec. See docs/acceleration.md.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import Conflict, NotFound

log = logging.getLogger(__name__)

ANNOTATION = "kubevirt-py.io/acceleration"
VMIS = "virtualmachineinstances"
_BY_DOMAIN_TYPE = {"kvm": "kvm", "qemu": "tcg", "test": "test"}


def compute_acceleration(domain_type: str) -> str:
    """The annotation value for libvirt domain type ``domain_type`` (``kvm`` | ``qemu`` | ``test``).
    Raises ValueError for other types."""
    try:
        return _BY_DOMAIN_TYPE[domain_type]
    except KeyError:
        raise ValueError(f"unknown libvirt domain type {domain_type!r}") from None


async def apply_acceleration_annotation(store: Any, vmi: dict, domain_type: str, attempts: int = 5) -> dict | None:
    """Set :data:`ANNOTATION` on the stored VMI (same uid as ``vmi``) by compare-and-swap on its
    resourceVersion; returns the stored VMI, or None when it is gone, was replaced by a newer VMI,
    or kept changing for ``attempts`` tries (logged; the guest runs regardless)."""
    value = compute_acceleration(domain_type)
    meta = vmi["metadata"]
    for _ in range(attempts):
        try:
            current = await store.get(VMIS, meta.get("namespace"), meta["name"])
        except NotFound:
            return None
        current_meta = current.get("metadata") or {}
        if current_meta.get("uid") != meta.get("uid"):
            return None
        annotations = current_meta.get("annotations") or {}
        if annotations.get(ANNOTATION) == value:
            return current
        updated = {**current, "metadata": {**current_meta, "annotations": {**annotations, ANNOTATION: value}}}
        try:
            return await store.update(VMIS, updated)
        except Conflict:
            continue
        except NotFound:
            return None
    log.warning("could not annotate VMI %s/%s with %s=%s: it kept changing", meta.get("namespace"), meta["name"],
                ANNOTATION, value)
    return None
