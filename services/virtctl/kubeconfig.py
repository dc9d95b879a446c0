"""Kubeconfig files: writing the one ``virtctl up`` produces and reading any for client commands.

Owns: the kubeconfig document (one cluster with the server URL and the CA as
``certificate-authority-data``, one user with a bearer ``token``, one context, current; on hosts
one more cluster and context per further virt-api replica, ``<name>-<host>``), written
atomically with mode 0600 because it carries the token; and resolving the current context of a
kubeconfig into what a client needs (:class:`ClusterAccess`), with the other clusters of the same
file as fail-over candidates (:func:`load_failover_access`). Format: Kubernetes'
``clientcmd/api/v1`` ``Config``; kubectl and the ``kubernetes`` client read it unchanged.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_NAME = "kubevirt-py"


def compute_kubeconfig(server: str, ca_pem: bytes | None, token: str, *, name: str = DEFAULT_NAME,
                       namespace: str = "default",
                       alternates: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A kubeconfig with one cluster/user/context named ``name`` (current), plus a cluster and a
    context ``<name>-<suffix>`` for each ``(suffix, server)`` of ``alternates`` (other replicas
    of the same API, same CA and user). ``ca_pem`` None = plain HTTP server (no CA)."""

    def cluster(url: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"server": url}
        if ca_pem is not None:
            entry["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
        return entry

    names = [(name, server), *((f"{name}-{suffix}", url) for suffix, url in alternates)]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": cluster(url)} for n, url in names],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": f"{name}-admin", "namespace": namespace}}
                     for n, _ in names],
        "current-context": name,
        "preferences": {},
    }


def apply_kubeconfig(path: Path, config: dict[str, Any]) -> bool:
    """Write ``config`` to ``path`` (0600, atomic rename). Returns False without touching the
    file when it already holds exactly this content."""
    text = yaml.safe_dump(config, sort_keys=False)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


@dataclass(frozen=True)
class ClusterAccess:
    """Where and how to reach the API: ``server`` URL, bearer ``token`` (may be None), the SSL
    context to use (None for http), and the context's default ``namespace``."""

    server: str
    token: str | None
    ssl_context: ssl.SSLContext | None
    namespace: str


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"kubeconfig {path} not found; run 'virtctl up' or pass --kubeconfig")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise ValueError(f"kubeconfig {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"kubeconfig {path} is not a YAML mapping")
    return doc


def load_cluster_access(path: Path, context: str | None = None) -> ClusterAccess:
    """Resolve ``context`` (default: current-context) of the kubeconfig at ``path``.

    Raises FileNotFoundError (with a hint to run ``virtctl up``) or ValueError naming what is
    missing or that the file is not YAML (one line, with the line number); supports
    ``certificate-authority(-data)``, ``insecure-skip-tls-verify``, ``token``
    and ``tokenFile``.
    """
    doc = _read_kubeconfig(path)
    name = context or doc.get("current-context")
    if not name:
        raise ValueError(f"kubeconfig {path} has no current-context")
    return _access_of(doc, name, path)


def load_failover_access(path: Path, context: str | None = None) -> list[ClusterAccess]:
    """The access of ``context`` (default: current-context) first, then that of every other
    context of the same file that uses the same user on another server (in file order): the
    replicas a client may turn to when the first cannot be reached. Raises as
    :func:`load_cluster_access` for the first; other contexts that do not resolve are skipped.
    """
    doc = _read_kubeconfig(path)
    name = context or doc.get("current-context")
    if not name:
        raise ValueError(f"kubeconfig {path} has no current-context")
    first = _access_of(doc, name, path)
    user = _named(doc, "contexts", name, path)["context"].get("user")
    accesses, servers = [first], {first.server}
    for entry in doc.get("contexts") or []:
        other = entry.get("name")
        if other == name or (entry.get("context") or {}).get("user") != user:
            continue
        try:
            access = _access_of(doc, other, path)
        except (ValueError, OSError):
            continue
        if access.server not in servers:
            servers.add(access.server)
            accesses.append(access)
    return accesses


def _access_of(doc: dict[str, Any], name: str, path: Path) -> ClusterAccess:
    ctx = _named(doc, "contexts", name, path)["context"]
    cluster = _named(doc, "clusters", ctx.get("cluster"), path)["cluster"]
    user = _named(doc, "users", ctx.get("user"), path).get("user", {}) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ValueError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
    ssl_ctx = None
    if server.startswith("https://"):
        if cluster.get("insecure-skip-tls-verify"):
            ssl_ctx = ssl.create_default_context()
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            ssl_ctx = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif cluster.get("certificate-authority"):
            ssl_ctx = ssl.create_default_context(cafile=str(path.parent / cluster["certificate-authority"]))
        else:
            ssl_ctx = ssl.create_default_context()
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return ClusterAccess(server.rstrip("/"), token, ssl_ctx, ctx.get("namespace") or "default")


def _named(doc: dict[str, Any], section: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise ValueError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")
