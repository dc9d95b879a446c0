"""Debian archive metadata: the OpenPGP-signed InRelease and the Packages index it pins.

Owns the Debian trust chain (Debian wiki "SecureApt"): InRelease is verified with `gpgv`
against only the keyring files pinned in build/keys; the signature must come from a pinned key
that is neither revoked nor expired; InRelease's SHA256 section pins `Packages.xz`; `Packages`
pins every .deb's SHA256 and size.
"""
from __future__ import annotations

import dataclasses
import hashlib
import lzma

from supplychain.errors import SupplyChainError
from supplychain.fetch import read_url
from supplychain.keys import check_gpgv
from supplychain.repoconfig import Repository
from supplychain.solver import read_deb_stanzas


@dataclasses.dataclass(frozen=True)
class DebIndex:
    """`inrelease` bytes as signed, `signers` (primary fingerprints of good signatures by pinned
    keys), `index_path` (e.g. "main/binary-amd64/Packages.xz"), its `index_sha256`/`index_size`
    from InRelease, the parsed `stanzas` of Packages and the
    compressed `index_raw`."""

    inrelease: bytes
    signers: tuple[str, ...]
    index_path: str
    index_sha256: str
    index_size: int
    stanzas: list[dict[str, str]]
    index_raw: bytes


def check_inrelease(repo: Repository, inrelease: bytes) -> tuple[tuple[str, ...], str]:
    """Verify InRelease with gpgv and the pinned keys; return (signer fingerprints, signed text).

    Refused (SupplyChainError): no good signature from a pinned key, or a signer that is revoked
    or expired per the pinned key files."""
    signers, body = check_gpgv(repo.keyring(), inrelease, None, f"repository {repo.name} InRelease")
    return signers, body.decode()


def compute_index_entry(body: str, index_path: str) -> tuple[str, int]:
    """(sha256, size) that the signed InRelease text lists for `index_path`."""
    for stanza in read_deb_stanzas(body)[:1]:
        for line in stanza.get("SHA256", "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == index_path:
                return parts[0], int(parts[1])
    raise SupplyChainError(f"InRelease does not list {index_path}")


def read_deb_index(repo: Repository) -> DebIndex:
    """Fetch and verify InRelease and Packages.xz of `repo` (network or file://)."""
    base = repo.baseurl + f"dists/{repo.suite}/"
    inrelease = read_url(base + "InRelease")
    signers, body = check_inrelease(repo, inrelease)
    index_path = f"{repo.component}/binary-{repo.arch}/Packages.xz"
    sha256, size = compute_index_entry(body, index_path)
    raw = read_url(base + index_path)
    if hashlib.sha256(raw).hexdigest() != sha256 or len(raw) != size:
        raise SupplyChainError(f"repository {repo.name}: {index_path} does not match the signed InRelease")
    stanzas = read_deb_stanzas(lzma.decompress(raw).decode())
    return DebIndex(inrelease, signers, index_path, sha256, size, stanzas, raw)


def compute_index_urls(repo: Repository, index_path: str, sha256: str) -> list[str]:
    """URLs of a pinned index: the by-hash path (kept by the archive after the index moves on,
    `Acquire-By-Hash: yes`) first, then the canonical path."""
    base = repo.baseurl + f"dists/{repo.suite}/"
    folder = index_path.rsplit("/", 1)[0]
    return [f"{base}{folder}/by-hash/SHA256/{sha256}", base + index_path]
