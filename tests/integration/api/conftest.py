"""Fixtures for virt-api integration tests: a real nats-server and a real virt-api process over TLS.

``api`` (session) runs both with :mod:`services.virtctl.installation` (the code ``virtctl up``
uses) in a private state directory on free ports, and writes a kubeconfig that kubectl and the
``kubernetes`` client read as they are. Tests keep apart by namespace (``namespace`` fixture).
``private_api`` (function) is the same for tests that kill processes.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from services.virtctl import installation as inst
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from shared.natsserver import pick_free_port

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFORMANCE = PROJECT_ROOT.parent / "shared" / "conformance"
KUBECTL = shutil.which("kubectl")


@dataclass
class ApiInstallation:
    """A running nats-server + virt-api pair; ``url``, ``token``, ``kubeconfig``, ``ssl_context``."""

    layout: inst.Layout

    @property
    def url(self) -> str:
        return self.layout.api_url

    @property
    def token(self) -> str:
        return self.layout.token_file.read_text().strip()

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def ca_file(self) -> Path:
        return self.layout.ca_cert

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.layout.ca_cert))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def session(self) -> requests.Session:
        """A requests session with the token that trusts only this CA (``trust_env`` off: a
        ``REQUESTS_CA_BUNDLE`` in the environment would otherwise replace the CA)."""
        s = requests.Session()
        s.trust_env = False
        s.headers.update(self.headers())
        s.verify = str(self.ca_file)
        return s

    def start(self, spec: inst.ServiceSpec) -> None:
        record = inst.launch(self.layout, spec)
        inst.wait_healthy(self.layout, spec, record)

    def kill(self, spec: inst.ServiceSpec) -> None:
        """``kill -9`` the process."""
        inst.stop(self.layout, spec, kill=True)

    def start_all(self) -> None:
        for spec in (inst.NATS_SERVER, inst.VIRT_API):
            self.start(spec)
        config = compute_kubeconfig(self.url, self.ca_file.read_bytes(), self.token)
        apply_kubeconfig(self.kubeconfig, config)

    def stop_all(self) -> None:
        for spec in (inst.VIRT_API, inst.NATS_SERVER):
            inst.stop(self.layout, spec)


def _installation(state_dir: Path) -> ApiInstallation:
    layout = inst.load_layout(state_dir, api_port=pick_free_port())
    installation = ApiInstallation(layout)
    try:
        installation.start_all()
    except BaseException:
        installation.stop_all()  # a half-started pair must not outlive the test
        raise
    return installation


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiInstallation]:
    """nats-server + virt-api (TLS, token) for the whole session."""
    installation = _installation(tmp_path_factory.mktemp("api-session"))
    try:
        yield installation
    finally:
        installation.stop_all()


@pytest.fixture
def private_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiInstallation]:
    """nats-server + virt-api of this test alone (it may kill and restart them)."""
    installation = _installation(tmp_path_factory.mktemp("api-private"))
    try:
        yield installation
    finally:
        installation.stop_all()


@pytest.fixture
def namespace() -> str:
    """A namespace name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubectl's discovery cache, per test module."""
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubectl(api, cache_dir):
    """Run the real kubectl with the installation's kubeconfig: ``kubectl("get", "vm")``; fails
    the test on a non-zero exit unless ``check=False``."""
    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([KUBECTL, "--kubeconfig", str(api.kubeconfig), "--cache-dir", str(cache_dir), *args],
                              capture_output=True, text=True, input=stdin, timeout=90)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    return run
