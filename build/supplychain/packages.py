"""Fetch, verify and unpack locked packages (RPM and Debian).

Owns the fail-closed gate between the cache and an image layer:
* RPM: sha256/size from the lock (fetch.Cache), then the OpenPGP header signature with
  `rpmkeys --checksig` against a private rpm database holding only the pinned keys (rpm.org
  docs/manual/signatures_digests.md), plus the key-state rules of keys.Keyring (pinned, not
  revoked, not expired), which rpm 4.18 does not apply itself. Unsigned packages are refused.
* Debian: the pinned InRelease verifies with gpgv against the pinned keys, lists the locked
  Packages index by sha256, and that index lists the .deb with the locked sha256 and size.
Payloads are unpacked to layer entries without running any maintainer script or scriptlet
(`rpm2archive`, `dpkg-deb --fsys-tarfile`).
"""
from __future__ import annotations

import hashlib
import lzma
import re
import subprocess
import tempfile
from pathlib import Path

from supplychain.debrepo import check_inrelease, compute_index_entry
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.keys import Keyring
from supplychain.layer import LayerEntry, compute_entries_from_tar
from supplychain.repoconfig import Repository
from supplychain.solver import read_deb_stanzas

_SIG_LINE = re.compile(r"Signature, key ID ([0-9a-fA-F]+): (\S+)")


def compute_lock_repository(lock: dict, lock_dir: Path, name: str) -> Repository:
    """Rebuild the Repository of lock entry `name` from the lock alone, refusing a key file
    whose bytes differ from the sha256 pinned in the lock."""
    for doc in lock["repositories"]:
        if doc["name"] != name:
            continue
        keys = []
        for key in doc["keys"]:
            path = (Path(lock_dir) / key["path"]).resolve()
            if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != key["sha256"]:
                raise SupplyChainError(f"repository {name}: key file {path} differs from the lock")
            keys.append(path)
        return Repository(name, doc["baseurl"], doc["arch"], tuple(keys), tuple(doc.get("revokedKeys", ())),
                          doc.get("suite", ""), doc.get("component", ""))
    raise SupplyChainError(f"lock has no repository {name!r}")


def check_rpm_signature(path: Path, keyring: Keyring, what: str) -> str:
    """Check an RPM's header signature and digests; return the signer's primary fingerprint.

    Refusals (SupplyChainError, one line naming `what`): not signed, signed by an unpinned key,
    by a revoked or expired key, or any signature/digest not OK (e.g. a flipped byte)."""
    with tempfile.TemporaryDirectory(prefix="kvb-rpmdb-") as db:
        for key in keyring.paths:
            imp = subprocess.run(["rpmkeys", "--dbpath", db, "--import", str(key)], capture_output=True, text=True)
            if imp.returncode != 0:
                raise SupplyChainError(f"key file {key}: rpmkeys cannot import it: {imp.stderr.strip()}")
        proc = subprocess.run(["rpmkeys", "--dbpath", db, "--checksig", "-v", str(path)],
                              capture_output=True, text=True)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()[1:] if line.strip()]
    sigs = [m for line in lines if (m := _SIG_LINE.search(line))]
    if not sigs:
        raise SupplyChainError(f"{what}: not signed (no OpenPGP signature in the header)")
    key = None
    for m in sigs:
        key = keyring.check_usable(m.group(1), what)
    bad = [line for line in lines if not line.endswith(": OK")]
    if proc.returncode != 0 or bad:
        raise SupplyChainError(f"{what}: signature check failed: {bad[0] if bad else proc.stdout.strip()}")
    return key.primary


def check_deb_chain(lock: dict, lock_dir: Path, pkg: dict, cache: Cache) -> str:
    """Check the Debian chain for `pkg`: pinned InRelease -> locked index -> .deb entry.
    Returns the InRelease signer fingerprints joined by ","."""
    what = f"package {pkg['id']}"
    repo = compute_lock_repository(lock, lock_dir, pkg["repository"])
    doc = next(d for d in lock["repositories"] if d["name"] == pkg["repository"])
    inrelease = (Path(lock_dir) / doc["inRelease"]["path"]).read_bytes()
    if hashlib.sha256(inrelease).hexdigest() != doc["inRelease"]["sha256"]:
        raise SupplyChainError(f"{what}: stored InRelease of {repo.name} differs from the lock")
    key = (repo, hashlib.sha256(inrelease).hexdigest())
    if key not in _INRELEASE_CACHE:  # one gpgv run per InRelease and process, not per package
        _INRELEASE_CACHE[key] = check_inrelease(repo, inrelease)
    signers, body = _INRELEASE_CACHE[key]
    index = doc["index"]
    if compute_index_entry(body, index["path"]) != (index["sha256"], index["size"]):
        raise SupplyChainError(f"{what}: signed InRelease does not list the locked {index['path']}")
    raw = cache.apply_fetch(index["urls"], index["sha256"], index["size"], f"repository {repo.name} index")
    entry = _deb_index_lookup(raw, pkg["name"], pkg["evr"], pkg["arch"])
    if entry is None or entry.get("Filename") != pkg["location"]:
        raise SupplyChainError(f"{what}: not listed in the signed {index['path']}")
    if (entry["SHA256"], int(entry["Size"])) != (pkg["sha256"], pkg["size"]):
        raise SupplyChainError(f"{what}: sha256/size in the lock differ from the signed index")
    return ",".join(signers)


_INDEX_CACHE: dict[Path, dict] = {}
_INRELEASE_CACHE: dict[tuple, tuple] = {}


def _deb_index_entries(path: Path) -> dict:
    """(name, version, arch) -> stanza of a Packages index; stanzas are split cheaply by their
    leading "Package:" line and parsed only when looked up (the index has ~60k stanzas)."""
    if path not in _INDEX_CACHE:
        raw: dict[str, list[str]] = {}
        for block in lzma.decompress(path.read_bytes()).decode().split("\n\n"):
            if block.startswith("Package: "):
                raw.setdefault(block[9:block.find("\n")].strip(), []).append(block)
        _INDEX_CACHE[path] = raw
    return _INDEX_CACHE[path]


def _deb_index_lookup(path: Path, name: str, version: str, arch: str) -> dict | None:
    for block in _deb_index_entries(path).get(name, []):
        [stanza] = read_deb_stanzas(block)
        if stanza.get("Version") == version and stanza.get("Architecture") == arch:
            return stanza
    return None


def check_package(lock: dict, lock_dir: Path, pkg: dict, path: Path, cache: Cache) -> str:
    """Verify a cached package of the lock by kind; return its signer (see the kind's check)."""
    what = f"package {pkg['id']}"
    if lock["kind"] == "rpm":
        keyring = compute_lock_repository(lock, lock_dir, pkg["repository"]).keyring()
        return check_rpm_signature(path, keyring, what)
    return check_deb_chain(lock, lock_dir, pkg, cache)


def apply_fetch_verified(lock: dict, lock_dir: Path, pkgs: list[dict], cache: Cache) -> list[Path]:
    """Fetch (or take from the cache) and verify every package; the signer found must be the
    one recorded in the lock. Returns cache paths in `pkgs` order; raises on the first refusal."""
    paths = []
    for pkg in pkgs:
        what = f"package {pkg['id']}"
        path = cache.apply_fetch(pkg["urls"], pkg["sha256"], pkg["size"], what)
        signer = check_package(lock, lock_dir, pkg, path, cache)
        if signer != pkg.get("signer"):
            raise SupplyChainError(f"{what}: signed by {signer}, lock records {pkg.get('signer')}")
        paths.append(path)
    return paths


def compute_payload_entries(kind: str, path: Path, owners: dict[str, int], groups: dict[str, int]) -> list[LayerEntry]:
    """Layer entries of a package's file payload (no scripts run). RPM owner names map through
    the image accounts (`owners`/`groups`, plus root); a name the image does not declare is
    refused, naming the file. Debian payloads keep their numeric owners."""
    if kind == "rpm":
        with open(path, "rb") as fh:
            proc = subprocess.run(["rpm2archive", "-n", "-"], stdin=fh, capture_output=True)
    else:
        proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
    if proc.returncode != 0:
        raise SupplyChainError(f"{path.name}: cannot unpack payload: {proc.stderr.decode().strip()}")
    try:
        entries = compute_entries_from_tar(proc.stdout, {"root": 0, **owners}, {"root": 0, **groups},
                                           by_name=kind == "rpm")
    except ValueError as exc:
        raise SupplyChainError(f"package file {path.name}: {exc}") from None
    return [e for e in entries if e.path.strip("./")]
