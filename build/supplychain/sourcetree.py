"""The source tree a build or release is made from: its commit, whether it has local changes,
and whether a project wheel holds exactly that commit's files.

Owns the binding between git and what gets built: `release` refuses a checkout with local
changes and a `--wheel` whose files differ from the commit it tags; `build` records the commit of
the tree it runs in and marks the provenance when that tree has local changes. Files are compared
by git blob id (SHA-1 of "blob <size>\\0<bytes>", what `git hash-object` computes), so no file of
the checkout is read: only the commit's tree.
"""
from __future__ import annotations

import hashlib
import subprocess
import tomllib
import zipfile
from pathlib import Path

from supplychain.errors import SupplyChainError


def read_git_commit(root: Path) -> str:
    """HEAD commit of the repository at `root`, or "" when not a git checkout."""
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def read_local_changes(root: Path, outputs: tuple[Path, ...] = ()) -> list[str]:
    """Tracked paths of `root` that differ from HEAD (`git status --porcelain -uno`: modified,
    staged, deleted; untracked files such as dist/ or oci/ are not sources), except those under
    `outputs` (directories the build itself writes, e.g. sbom/); [] for a clean checkout or when
    `root` is not a git checkout."""
    proc = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"], capture_output=True,
                          text=True)
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if proc.returncode != 0 or top.returncode != 0:
        return []
    base = Path(top.stdout.strip())
    skip = []
    for out in outputs:
        try:
            skip.append(Path(out).resolve().relative_to(base).as_posix().rstrip("/") + "/")
        except ValueError:
            continue
    paths = [line[3:] for line in proc.stdout.splitlines() if line.strip()]
    return [p for p in paths if not any(p.startswith(s) for s in skip)]


def check_clean_tree(root: Path) -> None:
    """SupplyChainError (one line, naming up to 3 paths) when `root` has local changes."""
    changed = read_local_changes(root)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise SupplyChainError(f"{root} has local changes ({', '.join(changed[:3])}{more}); "
                               "commit or stash them before a release")


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def read_tree_blobs(root: Path, commit: str) -> dict[str, str]:
    """{path: blob id} of every file in `commit`'s tree."""
    proc = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", "-z", commit], capture_output=True)
    if proc.returncode != 0:
        raise SupplyChainError(f"git ls-tree {commit} in {root} failed")
    out = {}
    for entry in proc.stdout.split(b"\0"):
        if entry:
            meta, path = entry.split(b"\t", 1)
            out[path.decode()] = meta.split()[2].decode()
    return out


def compute_wheel_sources(pyproject: bytes) -> dict[str, str]:
    """{top-level name in the wheel: source directory} from hatch's
    `[tool.hatch.build.targets.wheel] packages` (e.g. "supplychain" -> "build/supplychain")."""
    doc = tomllib.loads(pyproject.decode())
    packages = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    return {Path(p).name: p for p in packages.get("packages", [])}


def check_wheel_from_commit(root: Path, commit: str, wheel: Path) -> int:
    """Every file of `wheel` outside its `.dist-info` must be the file at the same place in
    `commit` (mapped through the commit's pyproject wheel packages), byte for byte. Returns the
    number of files compared; SupplyChainError naming the first file that differs or is absent."""
    blobs = read_tree_blobs(root, commit)
    pyproject = subprocess.run(["git", "-C", str(root), "show", f"{commit}:pyproject.toml"], capture_output=True)
    mapping = compute_wheel_sources(pyproject.stdout) if pyproject.returncode == 0 else {}
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SupplyChainError(f"wheel {wheel}: {getattr(exc, 'strerror', None) or 'not a zip file'}") from None
    count = 0
    with zf:
        for info in zf.infolist():
            top, _, rest = info.filename.partition("/")
            if info.is_dir() or top.endswith(".dist-info"):
                continue
            source = f"{mapping[top]}/{rest}" if top in mapping and rest else info.filename
            if blobs.get(source) != _blob_id(zf.read(info)):
                state = "differs from" if source in blobs else "is not in"
                raise SupplyChainError(f"wheel {Path(wheel).name}: {info.filename} {state} commit {commit[:12]} "
                                       f"({source}); build the wheel from the clean checkout being released")
            count += 1
    return count
