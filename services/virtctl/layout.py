"""Where an embedded installation keeps things, and the ports it chose.

Owns :class:`Layout` (paths under the state directory: ``installation.json`` with the chosen
ports — API, NATS, each service's health/metrics port —, ``logs/<service>.log``,
``run/<service>.json`` pid records, ``nats/`` JetStream data with ``nats/pki/`` (nats-server's
certificate) and ``nats/credentials/<role>.json`` (each service's NATS user, mode 0600), ``api/``
TLS material (the installation's CA) and token, ``kubeconfig``, ``images/``, ``virt-handler/``)
and :func:`load_layout`, which reads and persists it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.natsserver import NatsServer, NatsTls, pick_free_port

DEFAULT_API_PORT = 8443
DEFAULT_LIBVIRT_URI = "qemu:///system"


@dataclass(frozen=True)
class Layout:
    """Paths and ports of one installation (ports persisted in ``installation.json``)."""

    state_dir: Path
    api_port: int
    nats_port: int
    nats_http_port: int
    libvirt_uri: str = DEFAULT_LIBVIRT_URI
    node_name: str = ""
    controller_health_port: int = 0
    bridge_health_port: int = 0
    handler_health_port: int = 0
    migration_health_port: int = 0
    snapshot_health_port: int = 0

    @property
    def pvcs_dir(self) -> Path:
        """Claims' files of the local provisioner: ``<pvc name>/disk.img`` under ``<namespace>/``."""
        return self.state_dir / "pvcs"

    @property
    def volume_snapshots_dir(self) -> Path:
        """virt-snapshot's volume copies: ``<namespace>/<volumeSnapshotName>.qcow2``."""
        return self.state_dir / "volume-snapshots"

    @property
    def handler_dir(self) -> Path:
        """virt-handler's state: ``vmis/<uid>/`` holds each guest's overlay, ISOs, console log."""
        return self.state_dir / "virt-handler"

    @property
    def images_dir(self) -> Path:
        """The installation's local OCI image store (containerDisk / kernelBoot images)."""
        return self.state_dir / "images"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def nats_dir(self) -> Path:
        return self.state_dir / "nats"

    @property
    def api_dir(self) -> Path:
        return self.state_dir / "api"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def nats_url(self) -> str:
        """Clients reach nats-server with TLS only."""
        return f"tls://127.0.0.1:{self.nats_port}"

    @property
    def nats_tls(self) -> NatsTls:
        """nats-server's certificate and key (issued by the installation's CA) and that CA."""
        pki = self.nats_dir / "pki"
        return NatsTls(cert=pki / "server.crt", key=pki / "server.key", ca=self.ca_cert)

    @property
    def nats_credentials_dir(self) -> Path:
        return self.nats_dir / "credentials"

    def nats_credentials(self, role: str) -> Path:
        """The credentials file of NATS user ``role`` (a :data:`shared.nats_auth.ROLES` entry)."""
        return self.nats_credentials_dir / f"{role}.json"

    def nats_client_args(self, role: str) -> list[str]:
        """A service's NATS options as NATS user ``role``: ``--nats <url> --nats-credentials
        <file> --nats-ca <ca>``."""
        return ["--nats", self.nats_url, "--nats-credentials", str(self.nats_credentials(role)),
                "--nats-ca", str(self.ca_cert)]

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        return self.api_dir / "pki" / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.api_dir / "token"

    def nats_server(self, authorization: str | None = None) -> NatsServer:
        """The NatsServer describing this installation's server (config and paths; not started):
        TLS for clients, monitoring on 127.0.0.1, the users of ``authorization``."""
        return NatsServer(self.nats_dir, port=self.nats_port, http_port=self.nats_http_port,
                          server_name="kubevirt-py", authorization=authorization, tls=self.nats_tls)


def load_layout(state_dir: Path, api_port: int | None = None, *, libvirt_uri: str | None = None,
                node_name: str | None = None) -> Layout:
    """The installation's layout: ports from ``installation.json`` when it exists, otherwise
    ``api_port`` (default 8443) and free NATS ports, then persisted. An explicit ``api_port``
    different from the recorded one replaces it; so do ``libvirt_uri`` (default
    ``qemu:///system``) and ``node_name`` (default: the host name, as kubelet names its node)."""
    state_dir = state_dir.resolve()
    record = state_dir / "installation.json"
    data: dict[str, Any] = json.loads(record.read_text()) if record.exists() else {}
    for key, value in (("api_port", api_port), ("libvirt_uri", libvirt_uri), ("node_name", node_name)):
        if value is not None:
            data[key] = value
    data.setdefault("api_port", DEFAULT_API_PORT)
    data.setdefault("nats_port", pick_free_port())
    data.setdefault("nats_http_port", pick_free_port())
    data.setdefault("libvirt_uri", DEFAULT_LIBVIRT_URI)
    data.setdefault("node_name", os.environ.get("NODE_NAME") or socket.gethostname())
    if "migration_health_port" not in data:
        data["migration_health_port"] = _legacy_migration_port(state_dir) or pick_free_port()
    for key in ("controller_health_port", "bridge_health_port", "handler_health_port", "snapshot_health_port"):
        data.setdefault(key, pick_free_port())
    layout = Layout(state_dir, data["api_port"], data["nats_port"], data["nats_http_port"],
                    data["libvirt_uri"], data["node_name"], data["controller_health_port"],
                    data["bridge_health_port"], data["handler_health_port"], data["migration_health_port"],
                    data["snapshot_health_port"])
    state_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in asdict(layout).items() if k != "state_dir"}, indent=2) + "\n"
    if not record.exists() or record.read_text() != text:
        record.write_text(text)
    return layout


def _legacy_migration_port(state_dir: Path) -> int | None:
    """virt-migration's port as installations made before ``installation.json`` recorded it kept
    it (``<state>/virt-migration/health-port``), so a running virt-migration keeps its port."""
    try:
        return int((state_dir / "virt-migration" / "health-port").read_text())
    except (OSError, ValueError):
        return None
