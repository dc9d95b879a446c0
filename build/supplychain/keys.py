"""Pinned OpenPGP keys: read key files kept in the repository and decide whether a key may sign.

Owns the key-state rules that rpm's own checker does not apply (rpm 4.18 `rpmkeys --checksig`
accepts signatures by revoked and by expired keys): a signing key must be pinned by fingerprint,
not revoked, and not expired. Key files are read with GnuPG (`gpg --show-keys --with-colons`,
format in GnuPG's doc/DETAILS) in a throw-away home so no user keyring is consulted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

from supplychain.errors import SupplyChainError


@dataclasses.dataclass(frozen=True)
class PgpKey:
    """One primary key or subkey: `fingerprint` (40 upper-case hex), `primary` fingerprint of the
    key it belongs to, `validity` (GnuPG field 2: "r" revoked, "e" expired, others usable),
    `expires` (epoch seconds or 0), `uids` of the primary key, `path` of the pinned file."""

    fingerprint: str
    primary: str
    validity: str
    expires: int
    uids: tuple[str, ...]
    path: str

    @property
    def key_id(self) -> str:
        """Long key id: the last 16 hex digits of the fingerprint (lower case)."""
        return self.fingerprint[-16:].lower()


def read_keys(path: Path) -> list[PgpKey]:
    """All primary keys and subkeys in the armored or binary key file `path`.

    Raises SupplyChainError when GnuPG cannot parse the file."""
    with tempfile.TemporaryDirectory(prefix="kvb-gpg-") as home:
        proc = subprocess.run(["gpg", "--homedir", home, "--batch", "--with-colons",
                               "--fixed-list-mode", "--show-keys", str(path)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise SupplyChainError(f"key file {path}: gpg cannot read it: {proc.stderr.strip().splitlines()[-1:]}")
    rows: list[tuple[list[str], str, str]] = []  # (pub/sub fields, fingerprint, primary)
    uids: dict[str, list[str]] = {}
    pending: list[str] | None = None
    primary = ""
    for line in proc.stdout.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            pending = fields
        elif fields[0] == "fpr" and pending is not None:
            if pending[0] == "pub":
                primary = fields[9]
            rows.append((pending, fields[9], primary))
            pending = None
        elif fields[0] == "uid" and primary:
            uids.setdefault(primary, []).append(fields[9])
    keys = [PgpKey(fpr, prim, fields[1], int(fields[6] or 0), tuple(uids.get(prim, [])), str(path))
            for fields, fpr, prim in rows]
    if not keys:
        raise SupplyChainError(f"key file {path}: contains no OpenPGP key")
    return keys


def compute_file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (used to pin key files in the lock)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Keyring:
    """The keys pinned for one repository: the key files and the fingerprints recorded for them."""

    def __init__(self, paths: list[Path], revoked_fingerprints: tuple[str, ...] = ()):
        self.paths = [Path(p) for p in paths]
        self.keys = [key for path in self.paths for key in read_keys(path)]
        self.revoked = {f.upper() for f in revoked_fingerprints}

    def find(self, key_id: str) -> PgpKey | None:
        """The key whose fingerprint ends with `key_id` (8 or 16 hex digits, any case)."""
        key_id = key_id.upper()
        for key in self.keys:
            if key.fingerprint.endswith(key_id):
                return key
        return None

    def check_usable(self, key_id: str, what: str, now: float | None = None) -> PgpKey:
        """Return the pinned key `key_id` if it may sign; else raise one line naming `what`.

        Refused: a key id not in the pinned files ("unpinned key"), a key or its primary that
        is revoked (by a revocation signature in the pinned file or listed under `revokedKeys`
        in the repository config), or one whose expiry time has passed."""
        key = self.find(key_id)
        if key is None:
            raise SupplyChainError(f"{what}: signed by unpinned key {key_id.lower()}")
        primary = next((k for k in self.keys if k.fingerprint == key.primary), key)
        now = time.time() if now is None else now
        for k in (key, primary):
            if k.validity == "r" or k.fingerprint in self.revoked:
                raise SupplyChainError(f"{what}: signing key {k.fingerprint} is revoked")
            if k.validity == "e" or (k.expires and k.expires < now):
                raise SupplyChainError(f"{what}: signing key {k.fingerprint} expired at "
                                       f"{time.strftime('%Y-%m-%d', time.gmtime(k.expires))}")
        return key


def check_gpgv(keyring: Keyring, signature: bytes, data: bytes | None, what: str) -> tuple[tuple[str, ...], bytes]:
    """Verify an OpenPGP signature with `gpgv` and only the pinned key files: a clear-signed
    document (`data` None, e.g. Debian InRelease) or a detached signature over `data` (e.g.
    repomd.xml.asc). Returns (primary fingerprints of good signatures, signed bytes).

    Refused (SupplyChainError naming `what`): no good signature by a pinned key, or a signer that
    is revoked or expired per the pinned key files."""
    with tempfile.TemporaryDirectory(prefix="kvb-gpgv-") as tmp:
        args = ["gpgv", "--status-fd", "1"]
        for i, key in enumerate(keyring.paths):
            raw = Path(key).read_bytes()
            if raw.lstrip().startswith(b"-----BEGIN PGP"):  # gpgv reads binary keyrings only
                dearmored = Path(tmp) / f"key{i}.gpg"
                subprocess.run(["gpg", "--homedir", tmp, "--batch", "--yes", "--dearmor", "-o", str(dearmored),
                                str(key)], capture_output=True, check=True)
                key = dearmored
            args += ["--keyring", str(key)]
        sig = Path(tmp) / "signature"
        sig.write_bytes(signature)
        if data is None:
            args += ["--output", str(Path(tmp) / "body"), str(sig)]
        else:
            (Path(tmp) / "data").write_bytes(data)
            args += [str(sig), str(Path(tmp) / "data")]
        proc = subprocess.run(args, capture_output=True, text=True)
        body = (Path(tmp) / "body").read_bytes() if data is None and (Path(tmp) / "body").exists() else data
    signers = sorted({line.split()[-1] for line in proc.stdout.splitlines() if line.split()[1:2] == ["VALIDSIG"]})
    if not signers:
        raise SupplyChainError(f"{what}: no good signature from a pinned key")
    for fpr in signers:
        keyring.check_usable(fpr, what)
    return tuple(signers), body or b""
