"""Content-addressed download cache: `<cache>/sha256/<hex>`, filled only with verified bytes.

Owns fetching a pinned file (a package, a repository index) from an ordered list of URLs
(http(s):// or file://), checking its size and SHA-256 against the pin before it enters the
cache, and serving later requests from the cache without any network. Nothing unverified is
ever stored under its digest name.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from supplychain.errors import SupplyChainError

TIMEOUT_S = 60


def read_url(url: str) -> bytes:
    """Return the body at `url` (http, https or file); SupplyChainError on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SupplyChainError(f"cannot fetch {url}: {getattr(exc, 'reason', exc)}") from None


class Cache:
    """The cache directory; `path_for(sha256)` is where a verified file lives."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        """Path of the cached file with hex digest `sha256` (may not exist)."""
        return self.root / "sha256" / sha256

    def apply_put(self, data: bytes, sha256: str, size: int | None, what: str) -> Path:
        """Store `data` if its digest (and size, when given) match the pin; else refuse.

        `what` names the file in the error line (e.g. "package hello-0:1.0-1.x86_64")."""
        if size is not None and len(data) != size:
            raise SupplyChainError(f"{what}: size {len(data)} does not match the lock ({size})")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise SupplyChainError(f"{what}: sha256 {actual} does not match the lock ({sha256})")
        path = self.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha256}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path

    def apply_fetch(self, urls: list[str], sha256: str, size: int | None, what: str) -> Path:
        """Return the cached path for `sha256`, downloading from the first URL that yields the
        pinned bytes. A cached file is re-hashed before use (a corrupted cache entry is
        refused, not trusted). Raises SupplyChainError naming `what` when no URL works."""
        path = self.path_for(sha256)
        if path.exists():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha256 and (size is None or len(data) == size):
                return path
            path.unlink()
        errors = []
        for url in urls:
            try:
                return self.apply_put(read_url(url), sha256, size, what)
            except SupplyChainError as exc:
                errors.append(str(exc))
        if not urls:
            errors.append("no URL in the lock")
        raise SupplyChainError(errors[-1] if errors[-1].startswith(what) else f"{what}: {errors[-1]}")
