"""What the VMI tells its user about how its guest is accelerated.

KubeVirt's virt-handler records no such field (``useEmulation`` only changes the domain type), so
kubevirt-py adds one visible signal: the annotation :data:`ANNOTATION` on the VMI, written by the
handler when it starts the guest, with the value from :func:`compute_acceleration` of the libvirt
domain type it used (``kvm`` -> ``kvm``; ``qemu`` -> ``tcg``, QEMU's software emulator; ``test``
-> ``test`` for libvirt's test driver). It travels in the same compare-and-swap write as the
first ``Running`` status (``sync_executor``), so a started VMI costs one store write, not two.
An annotation, not a status field: status fields must be KubeVirt's (shared/api), and metadata
belongs to nobody's spec. See docs/acceleration.md.
"""

from __future__ import annotations

from typing import Any

ANNOTATION = "kubevirt-py.io/acceleration"
_BY_DOMAIN_TYPE = {"kvm": "kvm", "qemu": "tcg", "test": "test"}


def compute_acceleration(domain_type: str) -> str:
    """The annotation value for libvirt domain type ``domain_type`` (``kvm`` | ``qemu`` | ``test``).
    Raises ValueError for other types."""
    try:
        return _BY_DOMAIN_TYPE[domain_type]
    except KeyError:
        raise ValueError(f"unknown libvirt domain type {domain_type!r}") from None


def compute_annotated_metadata(meta: dict[str, Any], domain_type: str) -> dict[str, Any] | None:
    """``meta`` (a VMI's ``metadata``) with :data:`ANNOTATION` set for ``domain_type``; None when
    it already carries that value (nothing to write). Does not change ``meta``. Raises
    ValueError for unknown domain types (:func:`compute_acceleration`)."""
    value = compute_acceleration(domain_type)
    annotations = meta.get("annotations") or {}
    if annotations.get(ANNOTATION) == value:
        return None
    return {**meta, "annotations": {**annotations, ANNOTATION: value}}
