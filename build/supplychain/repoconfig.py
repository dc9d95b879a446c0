"""Package-source configuration: the repositories, their pinned keys and the lock targets.

Owns the YAML file (e.g. build/repos/debian-bookworm.yaml) that a lock is resolved from:

    kind: rpm | deb
    repositories:
      - name: test-x86_64            # rpm: baseurl + arch
        baseurl: http://127.0.0.1:8000/repo/
        arch: x86_64
        keys: [../keys/test-repo.asc]   # paths relative to this file
        revokedKeys: []                 # fingerprints withdrawn by the publisher
        mirrors: [https://cas.example/] # content-addressed mirrors: <mirror><sha256> (KubeVirt's builddeps bucket)
        signedMetadata: true            # rpm: require repodata/repomd.xml.asc by a pinned key (default)
        distro: fedora-40               # rpm: purl `distro` qualifier of its packages
      - name: bookworm-main          # deb: baseurl + suite + component + arch
        baseurl: http://deb.debian.org/debian
        suite: bookworm
        component: main
        arch: amd64
        keys: [../keys/debian-archive-bookworm-automatic.gpg]
    targets:
      control-plane: {install: [python3.11-minimal], exclude: [debconf]}

and the inputs checksum that makes a lock stale when any of it (or a key file) changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import yaml

from supplychain.errors import SupplyChainError
from supplychain.keys import Keyring, compute_file_sha256


@dataclasses.dataclass(frozen=True)
class Repository:
    """One repository: `baseurl` ends with "/"; rpm repos use `arch`, deb repos also `suite` and
    `component`; `keys` are absolute paths of the pinned key files."""

    name: str
    baseurl: str
    arch: str
    keys: tuple[Path, ...]
    revoked_keys: tuple[str, ...] = ()
    suite: str = ""
    component: str = ""
    mirrors: tuple[str, ...] = ()
    signed_metadata: bool = False
    distro: str = ""

    def keyring(self) -> Keyring:
        """The pinned keyring of this repository."""
        return Keyring(list(self.keys), self.revoked_keys)


@dataclasses.dataclass(frozen=True)
class Target:
    """A named package set: `install` names (or provides) and `exclude` names that must never be
    pulled in (their dependents are installed without them, like bazeldnf's
    --force-ignore-with-dependencies; used to keep shells and package managers out)."""

    name: str
    install: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """A parsed repository configuration file."""

    path: Path
    kind: str
    repositories: tuple[Repository, ...]
    targets: dict[str, Target]

    def compute_inputs_checksum(self) -> str:
        """sha256 over the configuration's meaning and every key file's bytes: any change to
        repositories, targets or keys changes it, which marks a lock as stale."""
        doc = {
            "kind": self.kind,
            # fields at their defaults are left out, so adding an option does not stale old locks
            "repositories": [{**{k: v for k, v in dataclasses.asdict(r).items() if v not in ((), "", False)},
                              "keys": [compute_file_sha256(k) for k in r.keys]}
                             for r in self.repositories],
            "targets": {n: dataclasses.asdict(t) for n, t in sorted(self.targets.items())},
        }
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def repository(self, name: str) -> Repository:
        """The repository called `name`; SupplyChainError if absent."""
        for repo in self.repositories:
            if repo.name == name:
                return repo
        raise SupplyChainError(f"{self.path}: no repository named {name!r}")


def read_source_config(path: Path) -> SourceConfig:
    """Parse and validate a repository configuration file; SupplyChainError names the field."""
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SupplyChainError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") not in ("rpm", "deb"):
        raise SupplyChainError(f"{path}: kind must be 'rpm' or 'deb'")
    repos = []
    for i, raw in enumerate(doc.get("repositories") or []):
        for field in ("name", "baseurl", "arch", "keys") + (("suite", "component") if doc["kind"] == "deb" else ()):
            if not raw.get(field):
                raise SupplyChainError(f"{path}: repositories[{i}].{field} is required")
        keys = tuple((path.parent / k).resolve() for k in raw["keys"])
        for k in keys:
            if not k.exists():
                raise SupplyChainError(f"{path}: repositories[{i}].keys: {k} does not exist")
        repos.append(Repository(raw["name"], raw["baseurl"].rstrip("/") + "/", raw["arch"], keys,
                                tuple(raw.get("revokedKeys") or ()), raw.get("suite", ""),
                                raw.get("component", ""),
                                tuple(m.rstrip("/") + "/" for m in raw.get("mirrors") or ()),
                                bool(raw.get("signedMetadata", doc["kind"] == "rpm")), str(raw.get("distro", ""))))
    if not repos:
        raise SupplyChainError(f"{path}: repositories must list at least one repository")
    targets = {}
    for name, raw in (doc.get("targets") or {}).items():
        if not raw or not raw.get("install"):
            raise SupplyChainError(f"{path}: targets.{name}.install is required")
        targets[name] = Target(name, tuple(raw["install"]), tuple(raw.get("exclude") or ()))
    return SourceConfig(path, doc["kind"], tuple(repos), targets)
