"""`verify --rebuild`: build the image again from the lock, the spec and the package cache, and
require the same manifest digest.

Owns the independent-rebuild check that catches what signatures cannot: content swapped and
re-signed by a legitimate identity. The rebuild takes its parameters from the signed provenance
(SOURCE_DATE_EPOCH, the tag the image was built under) and its inputs only from the verifier's
side: the spec and lock of the checkout, packages and wheels from the content-addressed cache
(re-hashed; fetched only on a miss, so it runs offline once the cache is filled), and the
project wheels the verifier passes (each must be a wheel the provenance lists by SHA-256).
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from supplychain.builder import apply_build
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache


def check_rebuild(digest: str, provenance: dict, spec: Path, cache: Path, wheels: tuple[Path, ...]) -> str:
    """Rebuild and compare with `digest` ("sha256:<hex>"); return the ok line, or raise
    SupplyChainError "rebuild: ..." naming the difference."""
    build_def = provenance.get("buildDefinition", {})
    epoch = build_def.get("internalParameters", {}).get("sourceDateEpoch")
    tag = build_def.get("externalParameters", {}).get("tag")
    if not isinstance(epoch, int) or not tag:
        raise SupplyChainError("rebuild: provenance lacks sourceDateEpoch or tag")
    resolved = {d.get("digest", {}).get("sha256") for d in build_def.get("resolvedDependencies", [])}
    for wheel in wheels:
        try:
            sha = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
        except OSError as exc:
            raise SupplyChainError(f"rebuild: wheel {wheel}: {exc.strerror}") from None
        if sha not in resolved:
            raise SupplyChainError(f"rebuild: wheel {Path(wheel).name} (sha256 {sha[:16]}...) is not in the provenance")
    with tempfile.TemporaryDirectory(prefix="kvb-rebuild-") as tmp:
        try:
            result = apply_build(spec, Path(tmp) / "oci", tag, Cache(cache), list(wheels), epoch)
        except SupplyChainError as exc:
            raise SupplyChainError(f"rebuild: {exc}") from None
    if result.digest != digest:
        raise SupplyChainError(f"rebuild: rebuilt image {result.digest} differs from {digest} "
                               f"(spec {Path(spec).name}, SOURCE_DATE_EPOCH {epoch})")
    return f"ok rebuild: rebuilt from lock, spec and cache with SOURCE_DATE_EPOCH {epoch}: same digest {digest}"
