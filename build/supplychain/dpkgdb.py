"""The package database scanners read, written into Debian-based images.

Owns `/var/lib/dpkg/status` of an image: one paragraph per installed package, its control
fields as the .deb carries them (`dpkg-deb --field`) with `Status: install ok installed` after
`Package`, paragraphs sorted by package name (deb-status(5)). Vulnerability scanners (Trivy,
Syft, Grype) list an image's OS packages from this file; without it they see none. No
maintainer script runs; the file is data derived from the verified packages, so the SBOM
attributes it to the build.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from supplychain.errors import SupplyChainError

STATUS_PATH = "var/lib/dpkg/status"


def read_deb_control(path: Path) -> str:
    """The control paragraph of a .deb (no trailing blank line)."""
    proc = subprocess.run(["dpkg-deb", "--field", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SupplyChainError(f"package file {Path(path).name}: dpkg-deb cannot read its control file")
    return proc.stdout.rstrip("\n")


def compute_status_paragraph(control: str) -> tuple[str, str]:
    """(package name, status paragraph) for one control paragraph."""
    lines = control.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Package:")), "")
    if not name:
        raise SupplyChainError("control paragraph without Package field")
    out = []
    for line in lines:
        if line.startswith("Status:"):
            continue
        out.append(line)
        if line.startswith("Package:"):
            out.append("Status: install ok installed")
    return name, "\n".join(out) + "\n"


def compute_dpkg_status(paths: list[Path]) -> bytes:
    """The `/var/lib/dpkg/status` bytes for the .deb files `paths`."""
    paragraphs = sorted(compute_status_paragraph(read_deb_control(p)) for p in paths)
    return "\n".join(text for _, text in paragraphs).encode()


def read_dpkg_status(data: bytes) -> set[tuple[str, str, str]]:
    """(Package, Version, Architecture) of every installed package in a status file."""
    out = set()
    for para in data.decode().split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed"):
            out.add((fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return out
