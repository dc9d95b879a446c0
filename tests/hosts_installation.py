"""``virtctl up --hosts N`` as the tests run it (not a test module): the CLI in a subprocess,
the processes it recorded, each nats-server's monitoring port on its host's address, the API
endpoints of the kubeconfig, and the guests of each host's libvirtd (when it serves libvirt's
test driver, ``up --testing-libvirt-driver test``). The ``hosts_state`` fixture
(tests/conftest.py) takes an installation down after its test.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from history_check import Guest
from services.virt_handler.hypervisor import Hypervisor
from services.virtctl.hosts import NATS_HTTP_PORT, HostsRecord, handler_uri
from services.virtctl.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def virtctl(*args: str, check: bool = True, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``python -m services.virtctl.main <args>`` from the repository; AssertionError with its
    output when it exits non-zero (unless ``check`` is False)."""
    proc = subprocess.run([sys.executable, "-m", "services.virtctl.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"virtctl {' '.join(args)}: {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; that value. AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def recorded_pids(state: Path) -> dict[str, int]:
    """Process name (``<service>-<host>``) -> pid, as ``up`` recorded them in ``<state>/run``."""
    return {p.stem: json.loads(p.read_text())["pid"] for p in sorted((state / "run").glob("*.json"))}


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def monitoring(address: str, path: str) -> Any:
    """JSON of a nats-server's monitoring endpoint ``path`` (e.g. ``/jsz?streams=1``) on its host's
    address."""
    with urllib.request.urlopen(f"http://{address}:{NATS_HTTP_PORT}{path}", timeout=3) as resp:
        return json.loads(resp.read())


def api_endpoints(kubeconfig: Path) -> tuple[list[str], ssl.SSLContext, str]:
    """The server of every context of ``kubeconfig`` (current first), an SSL context trusting
    its CA (one CA for every replica) and the bearer token of its user."""
    config = yaml.safe_load(kubeconfig.read_text())
    clusters = {c["name"]: c["cluster"] for c in config["clusters"]}
    contexts = sorted(config["contexts"], key=lambda c: c["name"] != config["current-context"])
    servers = [clusters[c["context"]["cluster"]]["server"] for c in contexts]
    ca = base64.b64decode(next(iter(clusters.values()))["certificate-authority-data"]).decode()
    (user,) = config["users"]
    return servers, ssl.create_default_context(cadata=ca), user["user"]["token"]


class HostGuests:
    """Every kubevirt-py domain (name ``<ns>_<vm>``) on each host's own libvirtd serving the test
    driver, read through the host's socket (a file: reached while the host is cut off)."""

    def __init__(self, layout: Layout, record: HostsRecord) -> None:
        assert record.libvirt_uri is None and record.libvirt_driver == "test", "needs --testing-libvirt-driver test"
        self.uris = {host.name: handler_uri(layout, record, host.name) for host in record.plan.hosts}

    async def guests(self) -> list[Guest]:
        return await read_guests(self.uris)


async def read_guests(uris: dict[str, str]) -> list[Guest]:
    """Every kubevirt-py domain (name ``<ns>_<vm>``) of each node's libvirt (node name -> URI)."""
    found = []
    for node, uri in uris.items():
        hypervisor = Hypervisor(uri)
        await hypervisor.open()
        try:
            for domain in await hypervisor.list_domains():
                if domain.uid and "_" in domain.name:
                    found.append(Guest(domain.name.split("_", 1)[1], node, domain.uid, domain.is_active))
        finally:
            await hypervisor.close()
    return found
