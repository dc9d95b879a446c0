"""Lock files: the exact packages of every target, with checksums, URLs and signers.

Owns `kubevirt-build lock`: resolve each target of a repository configuration (libsolv),
download every resolved package into the cache, verify it (sha256, size, OpenPGP signature or
the signed Debian index chain), and write a sorted, reviewable JSON lock:

    {"lockVersion": 1, "kind": "rpm", "inputsChecksum": "sha256:...", "config": "../repos/x.yaml",
     "repositories": [{"name", "baseurl", "arch", "keys": [{"path", "sha256", "fingerprints"}], ...}],
     "targets": {"control-plane": ["hello-0:1.0-1.x86_64", ...]},
     "packages": [{"id", "name", "evr", "arch", "sha256", "size", "repository", "location",
                   "urls", "signer", "requires"}]}

Debian locks keep the signed InRelease next to the lock (`<lock>.d/<repo>.InRelease`) so the
chain can be re-checked offline. A lock whose `inputsChecksum` differs from the configuration's
is stale and refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from supplychain.debrepo import compute_index_urls, read_deb_index
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.keys import compute_file_sha256
from supplychain.repoconfig import SourceConfig, read_source_config
from supplychain.rpmrepo import read_rpm_metadata
from supplychain.solver import Solver

LOCK_VERSION = 1


def compute_package_id(kind: str, name: str, evr: str, arch: str) -> str:
    """Lock id: NEVRA with explicit epoch for rpm ("acl-0:2.4.0-2.el9.x86_64", as KubeVirt's
    WORKSPACE names), name_version_arch for deb ("libc6_2.36-9_amd64", as rules_distroless)."""
    if kind == "rpm":
        return f"{name}-{evr if ':' in evr else '0:' + evr}.{arch}"
    return f"{name}_{evr}_{arch}"


def apply_lock(config_path: Path, lock_path: Path, cache: Cache) -> dict:
    """Resolve, download and verify every target of the configuration and write the lock.

    Returns the lock document. Raises SupplyChainError (one line) on any refusal."""
    from supplychain.packages import check_package  # the verifier also serves lock creation

    config = read_source_config(config_path)
    lock_path = Path(lock_path).resolve()
    lock_dir = lock_path.parent
    by_arch: dict[str, Solver] = {}
    repos_doc = []
    for repo in config.repositories:
        solver = by_arch.setdefault(repo.arch, Solver(repo.arch))
        keyring = repo.keyring()
        doc = {"name": repo.name, "baseurl": repo.baseurl, "arch": repo.arch,
               "keys": [{"path": os.path.relpath(k, lock_dir), "sha256": compute_file_sha256(k),
                         "fingerprints": sorted({x.primary for x in keyring.keys if x.path == str(k)})}
                        for k in repo.keys],
               "revokedKeys": sorted(repo.revoked_keys)}
        if config.kind == "rpm":
            meta = read_rpm_metadata(repo)
            solver.add_rpm_primary(repo.name, meta.primary_xml)
            doc.update(repomdSha256=meta.repomd_sha256, primarySha256=meta.primary_sha256,
                       signedMetadata=repo.signed_metadata)
            if repo.distro:
                doc["distro"] = repo.distro
        else:
            index = read_deb_index(repo)
            solver.add_deb_packages(repo.name, index.stanzas)
            evidence = lock_path.with_suffix(".d") / f"{repo.name}.InRelease"
            evidence.parent.mkdir(parents=True, exist_ok=True)
            evidence.write_bytes(index.inrelease)
            cache.apply_put(index.index_raw, index.index_sha256, index.index_size,
                            f"repository {repo.name} {index.index_path}")
            doc.update(suite=repo.suite, component=repo.component,
                       inRelease={"path": os.path.relpath(evidence, lock_dir),
                                  "sha256": hashlib.sha256(index.inrelease).hexdigest(),
                                  "signers": list(index.signers)},
                       index={"path": index.index_path, "sha256": index.index_sha256,
                              "size": index.index_size,
                              "urls": compute_index_urls(repo, index.index_path, index.index_sha256)})
        repos_doc.append(doc)
    packages: dict[str, dict] = {}
    targets: dict[str, list[str]] = {}
    for target in sorted(config.targets.values(), key=lambda t: t.name):
        ids = []
        for arch, solver in sorted(by_arch.items()):
            for r in solver.resolve(list(target.install), list(target.exclude)):
                pid = compute_package_id(config.kind, r.name, r.evr, r.arch)
                ids.append(pid)
                if pid in packages:
                    continue
                repo = config.repository(r.repository)
                packages[pid] = {"id": pid, "name": r.name, "evr": r.evr, "arch": r.arch,
                                 "sha256": r.sha256, "size": r.size, "repository": r.repository,
                                 "location": r.location,
                                 "urls": [repo.baseurl + r.location] + [m + r.sha256 for m in repo.mirrors],
                                 "requires": list(r.requires)}
        targets[target.name] = sorted(set(ids))
    lock = {"lockVersion": LOCK_VERSION, "kind": config.kind,
            "inputsChecksum": config.compute_inputs_checksum(),
            "config": os.path.relpath(config.path, lock_dir),
            "repositories": repos_doc, "targets": targets,
            "packages": [packages[k] for k in sorted(packages)]}
    for pkg in lock["packages"]:
        path = cache.apply_fetch(pkg["urls"], pkg["sha256"], pkg["size"], f"package {pkg['id']}")
        pkg["signer"] = check_package(lock, lock_dir, pkg, path, cache)
    write_lock(lock, lock_path)
    return lock


def write_lock(lock: dict, path: Path) -> None:
    """Write the lock with sorted keys and 2-space indentation (reviewable diffs)."""
    Path(path).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def read_lock(path: Path) -> dict:
    """Parse a lock file; SupplyChainError if unreadable or of another version."""
    try:
        lock = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SupplyChainError(f"lock {path}: cannot read: {exc}") from None
    if lock.get("lockVersion") != LOCK_VERSION or lock.get("kind") not in ("rpm", "deb"):
        raise SupplyChainError(f"lock {path}: lockVersion must be {LOCK_VERSION} and kind rpm or deb")
    return lock


def check_lock_fresh(lock: dict, lock_path: Path) -> SourceConfig:
    """Refuse a stale lock: its inputsChecksum must equal the configuration's current one.
    Returns the configuration."""
    config = read_source_config(Path(lock_path).resolve().parent / lock["config"])
    current = config.compute_inputs_checksum()
    if current != lock["inputsChecksum"]:
        raise SupplyChainError(f"lock {lock_path} is stale: inputs changed ({lock['inputsChecksum']} -> "
                               f"{current}); run `kubevirt-build lock --config {config.path}`")
    return config


def compute_target_packages(lock: dict, target: str) -> list[dict]:
    """The lock's package entries of `target`, sorted by id; SupplyChainError if unknown."""
    if target not in lock["targets"]:
        raise SupplyChainError(f"lock has no target {target!r} (has {sorted(lock['targets'])})")
    by_id = {p["id"]: p for p in lock["packages"]}
    missing = [i for i in lock["targets"][target] if i not in by_id]
    if missing:
        raise SupplyChainError(f"lock target {target!r} names packages without entries: {missing}")
    return [by_id[i] for i in lock["targets"][target]]
