"""RPM repository metadata: repomd.xml and the checksum-verified primary.xml.

Owns reading a createrepo-style repository (createrepo_c layout; namespaces from
http://linux.duke.edu/metadata/repo): fetch `repodata/repomd.xml`, find the `primary` data entry,
fetch its file and refuse it unless its checksum matches the one repomd.xml gives. With
`signedMetadata: true` repomd.xml must carry a detached OpenPGP signature (repomd.xml.asc) by a
pinned key (dnf's repo_gpgcheck), which stops a mirror from serving old or chosen metadata.
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import lzma
import xml.etree.ElementTree as ET

from supplychain.errors import SupplyChainError
from supplychain.fetch import read_url
from supplychain.keys import check_gpgv
from supplychain.repoconfig import Repository

REPO_NS = "{http://linux.duke.edu/metadata/repo}"


@dataclasses.dataclass(frozen=True)
class RpmMetadata:
    """`repomd_sha256` of repomd.xml as fetched, `primary_sha256` of the primary file as listed,
    and `primary_xml` (decompressed)."""

    repomd_sha256: str
    primary_sha256: str
    primary_xml: bytes


def read_rpm_metadata(repo: Repository) -> RpmMetadata:
    """Fetch and check the metadata of `repo`; SupplyChainError names the repository."""
    repomd = read_url(repo.baseurl + "repodata/repomd.xml")
    if repo.signed_metadata:  # dnf's repo_gpgcheck: a detached signature over repomd.xml
        what = f"repository {repo.name} repomd.xml"
        try:
            signature = read_url(repo.baseurl + "repodata/repomd.xml.asc")
        except SupplyChainError as exc:
            raise SupplyChainError(f"{what}: not signed ({exc})") from None
        check_gpgv(repo.keyring(), signature, repomd, what)
    try:
        root = ET.fromstring(repomd)
    except ET.ParseError as exc:
        raise SupplyChainError(f"repository {repo.name}: repomd.xml is not XML: {exc}") from None
    for data in root.findall(f"{REPO_NS}data"):
        if data.get("type") != "primary":
            continue
        checksum = data.find(f"{REPO_NS}checksum")
        href = data.find(f"{REPO_NS}location").get("href")
        alg = checksum.get("type")
        if alg not in ("sha256", "sha512"):
            raise SupplyChainError(f"repository {repo.name}: primary checksum type {alg!r} is too weak")
        raw = read_url(repo.baseurl + href)
        actual = hashlib.new(alg, raw).hexdigest()
        if actual != checksum.text.strip():
            raise SupplyChainError(f"repository {repo.name}: {href} {alg} {actual} does not match repomd.xml")
        return RpmMetadata(hashlib.sha256(repomd).hexdigest(), hashlib.sha256(raw).hexdigest(),
                           compute_decompressed(raw, href))
    raise SupplyChainError(f"repository {repo.name}: repomd.xml has no primary data entry")


def compute_decompressed(raw: bytes, name: str) -> bytes:
    """Decompress by file suffix (.gz, .xz, .bz2, .zst or none)."""
    if name.endswith(".gz"):
        return gzip.decompress(raw)
    if name.endswith(".xz"):
        return lzma.decompress(raw)
    if name.endswith(".bz2"):
        return bz2.decompress(raw)
    if name.endswith(".zst"):
        import zstandard
        return zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 31)
    return raw
