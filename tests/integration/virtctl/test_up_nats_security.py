"""The embedded installation's NATS is secured: ``virtctl up`` (handler on libvirt's test
driver) runs nats-server with TLS and one user per service, every service connects as its own
user (nats-server's ``/connz?auth=1``), credentials files are 0600, nobody connects anonymously,
a VM goes from create to a paused guest without one permissions violation, and
``down --wipe`` removes the credentials and certificates."""

from __future__ import annotations

import asyncio
import json
import stat
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client, config

from services.virtctl.installation import load_layout
from shared.bus import connect
from shared.errors import ServiceUnavailable
from shared.nats_auth import ROLES, read_credentials
from shared.natsserver import pick_free_port
from tests.integration.virtctl.test_up_down import TEST_NODE, virtctl

#: NATS user -> the client name each of its connections starts with
SERVICE_USERS = {"virt-api": "virt-api", "virt-controller": "virt-controller", "scheduler-bridge": "scheduler-bridge",
                 "virt-migration": "virt-migration", "virt-snapshot": "virt-snapshot", "virt-handler": "virt-handler"}


@pytest.fixture
def state(tmp_path: Path):
    directory = tmp_path / "state"
    yield directory
    if (directory / "installation.json").exists():
        virtctl("down", "--state-dir", str(directory), check=False)


def monitor(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_every_service_connects_as_its_own_user_over_tls_and_nobody_anonymously(state: Path):
    virtctl("up", "--state-dir", str(state), "--api-port", str(pick_free_port()), *TEST_NODE)
    layout = load_layout(state)

    credentials = layout.nats_credentials_dir
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    assert sorted(p.name for p in credentials.iterdir()) == sorted(f"{role}.json" for role in ROLES)
    for role in ROLES:
        path = layout.nats_credentials(role)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert read_credentials(path).user == role
    assert stat.S_IMODE(layout.nats_tls.key.stat().st_mode) == 0o600
    config_text = (layout.nats_dir / "nats-server.conf").read_text()
    for role in ROLES:  # only bcrypt hashes reach the server's configuration
        assert read_credentials(layout.nats_credentials(role)).password not in config_text
    assert layout.nats_url.startswith("tls://127.0.0.1:")

    varz = monitor(layout.nats_http_port, "/varz")
    assert varz["http_host"] == "127.0.0.1"  # monitoring only for the operator on this machine
    assert varz["tls_required"] is True and varz["auth_required"] is True

    def users_by_client() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for conn in monitor(layout.nats_http_port, "/connz?auth=1&limit=1000")["connections"]:
            assert conn.get("tls_version"), conn  # no plain connection
            seen.setdefault(conn.get("authorized_user", ""), set()).add(conn.get("name", ""))
        return seen

    seen = wait_for(lambda: (s := users_by_client()) and set(SERVICE_USERS) <= set(s) and s, 30,
                    "a connection of every service")
    assert set(seen) == set(SERVICE_USERS)  # nothing else, nobody anonymous
    for user, names in seen.items():
        assert all(name.startswith(SERVICE_USERS[user]) for name in names), (user, names)

    async def anonymous() -> str:
        with pytest.raises(ServiceUnavailable) as refused:
            await connect([layout.nats_url], name="intruder", tls_ca=layout.ca_cert)
        return str(refused.value)

    assert "Authorization Violation" in asyncio.run(anonymous())

    # a VM's whole path (virt-api, virt-controller, scheduler-bridge, virt-handler, and a
    # command virt-api sends to the handler) needs nothing its users may not do
    api_client = config.new_client_from_config(config_file=str(layout.kubeconfig))
    try:
        custom = client.CustomObjectsApi(api_client)
        vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "secured"},
              "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {
                  "devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}}}}
        custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm)

        def vmi_phase() -> str | None:
            try:
                vmi = custom.get_namespaced_custom_object("kubevirt.io", "v1", "default",
                                                          "virtualmachineinstances", "secured")
            except client.ApiException:
                return None
            return (vmi.get("status") or {}).get("phase") == "Running" and "Running"

        wait_for(vmi_phase, 60, "the VMI Running")
        virtctl("--kubeconfig", str(layout.kubeconfig), "pause", "vmi", "secured")

        def paused() -> bool:
            vmi = custom.get_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances",
                                                      "secured")
            return any(c.get("type") == "Paused" and c.get("status") == "True"
                       for c in (vmi.get("status") or {}).get("conditions") or [])

        wait_for(paused, 30, "the Paused condition the handler writes")
    finally:
        api_client.close()
    logs = {p.name: p.read_text(errors="replace") for p in layout.logs_dir.glob("*.log")}
    assert not [name for name, text in logs.items() if "permissions violation" in text.lower()], logs

    virtctl("down", "--state-dir", str(state), "--wipe")
    assert not credentials.exists() and not layout.nats_tls.cert.exists()
