"""virtctl's client fails over to the kubeconfig's other clusters when a server cannot be
connected to (services.virtctl.client, services.virtctl.kubeconfig)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.virtctl.client import ApiClient
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig, load_failover_access
from shared import errors
from shared.natsserver import pick_free_port


def test_kubeconfig_with_alternates_and_their_order(tmp_path: Path) -> None:
    config = compute_kubeconfig("https://10.0.0.11:8443", None, "tok", alternates=[("host2", "https://10.0.0.12:8443")])
    assert [c["name"] for c in config["contexts"]] == ["kubevirt-py", "kubevirt-py-host2"]
    assert config["current-context"] == "kubevirt-py"
    assert [c["cluster"]["server"] for c in config["clusters"]] == ["https://10.0.0.11:8443", "https://10.0.0.12:8443"]
    path = tmp_path / "kubeconfig"
    apply_kubeconfig(path, config)
    assert [a.server for a in load_failover_access(path)] == ["https://10.0.0.11:8443", "https://10.0.0.12:8443"]
    assert [a.server for a in load_failover_access(path, "kubevirt-py-host2")] == [
        "https://10.0.0.12:8443", "https://10.0.0.11:8443"]


@pytest.fixture
async def server() -> TestServer:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"answeredBy": "second", "auth": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/hello", hello)
    async with TestServer(app, host="127.0.0.1") as running:
        yield running


async def test_a_refused_connection_goes_to_the_next_cluster(tmp_path: Path, server: TestServer) -> None:
    closed = pick_free_port()  # nobody listens here
    path = tmp_path / "kubeconfig"
    apply_kubeconfig(path, compute_kubeconfig(f"http://127.0.0.1:{closed}", None, "tok",
                                              alternates=[("host2", f"http://127.0.0.1:{server.port}")]))
    async with ApiClient.from_kubeconfig(path) as api:
        assert await api.get("/hello") == {"answeredBy": "second", "auth": "Bearer tok"}
        assert api.access.server == f"http://127.0.0.1:{server.port}"


async def test_without_another_cluster_the_error_names_the_server(tmp_path: Path) -> None:
    closed = pick_free_port()
    path = tmp_path / "kubeconfig"
    apply_kubeconfig(path, compute_kubeconfig(f"http://127.0.0.1:{closed}", None, "tok"))
    async with ApiClient.from_kubeconfig(path) as api:
        with pytest.raises(errors.ServiceUnavailable, match=f"cannot reach http://127.0.0.1:{closed}"):
            await api.get("/hello")
