"""Local guest images: the OCI image-layout store behind containerDisk and kernelBoot.

Public API: :class:`ImageStore` (``import_disk``, ``import_kernel``, ``resolve``,
``list_refs``, ``is_present``, ``remove``), :class:`ResolvedImage`, :class:`ImageNotFound`,
:func:`normalize_ref`, :func:`default_store_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import (ImageFileNotFound, ImageNotFound, ImageStore, ResolvedImage, detect_disk_format,
                    normalize_ref)


def default_store_root(state_dir: Path | None = None) -> Path:
    """``<state>/images``; the state dir defaults to ``$KUBEVIRT_PY_STATE`` or ``/var/lib/kubevirt-py``."""
    state = Path(state_dir or os.environ.get("KUBEVIRT_PY_STATE", "/var/lib/kubevirt-py"))
    return state / "images"


__all__ = ["ImageFileNotFound", "ImageNotFound", "ImageStore", "ResolvedImage", "default_store_root",
           "detect_disk_format", "normalize_ref"]
