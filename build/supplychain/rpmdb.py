"""The package database scanners read, written into RPM-based images.

Owns `/var/lib/rpm/rpmdb.sqlite` of an image: rpm itself records the verified packages'
headers (`rpm --justdb`: database only, no payload, no scriptlet, no trigger) in a throw-away
root; rpm 4.18 takes INSTALLTIME from SOURCE_DATE_EPOCH, so the file is reproducible.
Vulnerability scanners (Trivy, Syft, Grype) list an RPM image's packages from it. Signatures
were checked before (packages.py), so this step does not check them again.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from supplychain.errors import SupplyChainError

RPMDB_PATH = "var/lib/rpm/rpmdb.sqlite"


def _rpm(root: str, *args: str, epoch: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    return subprocess.run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", *args], capture_output=True,
                          text=True, env=env)


def compute_rpmdb(paths: list[Path], epoch: int) -> bytes:
    """The rpmdb.sqlite bytes recording the .rpm files `paths` as installed at `epoch`."""
    with tempfile.TemporaryDirectory(prefix="kvb-rpmdb-") as root:
        init = _rpm(root, "--initdb", epoch=epoch)
        proc = _rpm(root, "--justdb", "--nodeps", "--noscripts", "--notriggers", "--nosignature", "--nodigest",
                    "--ignorearch", "--ignoreos", "-i", *[str(p) for p in paths], epoch=epoch)
        db = Path(root) / RPMDB_PATH
        if init.returncode != 0 or proc.returncode != 0 or not db.exists():
            detail = (proc.stderr or init.stderr).strip().splitlines()[-1:] or ["no database"]
            raise SupplyChainError(f"rpm database: rpm --justdb failed: {detail[0]}")
        return db.read_bytes()


def read_rpmdb(data: bytes) -> set[tuple[str, str, str]]:
    """(name, [epoch:]version-release (epoch only when set), arch) of every package in an rpmdb.sqlite, read by rpm
    as a scanner would."""
    with tempfile.TemporaryDirectory(prefix="kvb-rpmdb-") as root:
        db = Path(root) / RPMDB_PATH
        db.parent.mkdir(parents=True)
        db.write_bytes(data)
        proc = _rpm(root, "-qa", "--qf", "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\\n")
    if proc.returncode != 0:
        raise SupplyChainError(f"rpm database: cannot read: {proc.stderr.strip()[:200]}")
    out = set()
    for line in proc.stdout.splitlines():
        name, evr, arch = line.split()
        out.add((name, evr, arch))
    return out
