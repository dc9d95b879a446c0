"""nats-server enforces shared.nats_auth: no anonymous or wrong-password client, no plain
connection where TLS is required, a handler's user cannot write a VM (its VMI status it can),
virt-api's can; and a three-node cluster whose routes require mutual TLS forms and replicates
an R3 bucket. Real nats-server processes on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from secured_nats import Secured, make_secured, store_as
from store_objects import make_vm

from shared.bus import connect
from shared.errors import Forbidden, ServiceUnavailable
from shared.nats_auth import (
    NatsCredentials,
    write_credentials,
)
from shared.natsserver import NatsCluster, NatsServer
from shared.store import ObjectStore

VMS, VMIS = "virtualmachines", "virtualmachineinstances"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Secured:
    return make_secured(tmp_path_factory.mktemp("nats-secured"))


@pytest.fixture(scope="module")
def server(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    nats = NatsServer(tmp_path_factory.mktemp("nats-secured-server"), authorization=secured.authorization,
                      tls=secured.tls)
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


async def test_a_client_without_credentials_is_refused(server: NatsServer, secured: Secured):
    assert server.url.startswith("tls://127.0.0.1:")
    with pytest.raises(ServiceUnavailable, match="Authorization Violation"):
        await connect([server.url], name="anonymous", tls_ca=secured.tls.ca)


async def test_a_wrong_password_is_refused(server: NatsServer, secured: Secured, tmp_path: Path):
    wrong = tmp_path / "wrong.json"
    write_credentials(wrong, NatsCredentials("virt-api", "not-the-password"))
    with pytest.raises(ServiceUnavailable, match="Authorization Violation"):
        await connect([server.url], name="guesser", credentials=wrong, tls_ca=secured.tls.ca)
    # the right password of another user is no better
    other = json.loads(secured.credentials["virt-handler"].read_text())["password"]
    write_credentials(wrong, NatsCredentials("virt-api", other))
    with pytest.raises(ServiceUnavailable, match="Authorization Violation"):
        await connect([server.url], name="guesser", credentials=wrong, tls_ca=secured.tls.ca)


def test_a_plain_connection_is_refused_when_tls_is_required(server: NatsServer, secured: Secured):
    """Speak the NATS protocol in the clear, right credentials included: the server announces
    TLS as required and never answers a PING (it closes the connection)."""
    creds = json.loads(secured.credentials["virt-api"].read_text())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        info_line = sock.makefile("rb").readline().decode()
        assert info_line.startswith("INFO ")
        info = json.loads(info_line[5:])
        assert info["tls_required"] is True and info["auth_required"] is True
        connect_line = json.dumps({"user": creds["user"], "pass": creds["password"], "verbose": False,
                                   "pedantic": False, "tls_required": False})
        sock.sendall(f"CONNECT {connect_line}\r\nPING\r\n".encode())
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert b"PONG" not in answer and b"+OK" not in answer


async def test_a_handler_cannot_write_a_vm_but_writes_vmi_status_and_virt_api_writes_both(
        server: NatsServer, secured: Secured):
    api = await store_as(server, secured, "virt-api")
    handler = await store_as(server, secured, "virt-handler")
    try:
        vm = await api.create(VMS, make_vm("vm1"))
        vmi = await api.create(VMIS, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                      "metadata": {"name": "vm1", "namespace": "default"},
                                      "spec": {"domain": {"devices": {}}}, "status": {"phase": "Scheduled"}})

        # the handler reads everything it is given to see ...
        assert (await handler.get(VMS, "default", "vm1"))["metadata"]["resourceVersion"] == \
            vm["metadata"]["resourceVersion"]
        # ... writes a VMI's status ...
        vmi["status"] = {"phase": "Running"}
        running = await handler.update(VMIS, vmi, subresource="status")
        assert running["status"]["phase"] == "Running"
        # ... and can neither rewrite nor delete a VM: the server refuses the publish itself
        changed = {**vm, "spec": {**vm["spec"], "runStrategy": "Always"}}
        with pytest.raises(Forbidden, match=r"may not publish to \$KV\.kv_virtualmachines\.default\.vm1"):
            await handler.update(VMS, changed)
        with pytest.raises(Forbidden, match=r"\$KV\.kv_virtualmachines\.default\.vm1"):
            await handler.delete(VMS, "default", "vm1")
        with pytest.raises(Forbidden):
            await handler.create(VMS, make_vm("planted"))
        # nor remove the bucket behind the store's back (no JetStream answer ever comes)
        with pytest.raises(Exception):
            await handler.bus.jetstream(timeout=1.0).delete_stream("KV_kv_virtualmachines")

        after = await api.get(VMS, "default", "vm1")
        assert after["metadata"]["resourceVersion"] == vm["metadata"]["resourceVersion"]
        assert after["spec"] == vm["spec"]
        # virt-api's user writes VMs
        updated = await api.update(VMS, changed)
        assert updated["spec"]["runStrategy"] == "Always"
        assert [o["metadata"]["name"] for o in (await api.list(VMS))[0]] == ["vm1"]
    finally:
        await handler.close()
        await api.close()


def route_greeting(port: int, context: ssl.SSLContext | None) -> bytes:
    """What a route port sends first to a client (TLS with ``context``, else in the clear)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        sock.settimeout(2)
        data = b""
        try:
            while b"\r\n" not in data and (chunk := sock.recv(4096)):
                data += chunk
        except TimeoutError:
            pass
        return data


async def test_cluster_routes_require_mutual_tls_and_replicate_an_r3_bucket(secured: Secured, tmp_path: Path):
    cluster = NatsCluster(tmp_path / "cluster", size=3, authorization=secured.authorization, tls=secured.tls)
    for node in cluster.nodes:
        assert "  tls {\n" in node.compute_config() and "verify: true" in node.compute_config()
    await asyncio.to_thread(cluster.start)
    try:
        # a route port speaks TLS first: nothing in the clear, and nothing without a certificate
        # of the CA; a node's certificate gets the route's INFO
        route_port = cluster.nodes[0].cluster.route_port  # type: ignore[union-attr]
        assert route_greeting(route_port, None) == b""
        anonymous = ssl.create_default_context(cafile=str(secured.tls.ca))
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
            route_greeting(route_port, anonymous)
        member = ssl.create_default_context(cafile=str(secured.tls.ca))
        member.load_cert_chain(str(secured.tls.cert), str(secured.tls.key))
        info = json.loads(route_greeting(route_port, member).decode().split("\r\n")[0][5:])
        assert info["server_name"] == "kvpy-n1" and info["tls_required"] is True

        store = await ObjectStore.connect(cluster.urls, replicas=3, name="virt-api",
                                          credentials=secured.credentials["virt-api"], tls_ca=secured.tls.ca)
        try:
            created = await store.create(VMS, make_vm("vm-r3"))
            # an R3 write is acknowledged by a quorum: the third peer may lag a moment behind
            async with asyncio.timeout(10):
                while True:
                    info = await store.bus.jetstream().stream_info("KV_kv_virtualmachines")
                    peers = info.cluster.replicas or []
                    if len(peers) == 2 and all(p.current for p in peers):
                        break
                    await asyncio.sleep(0.1)
            assert info.config.num_replicas == 3
        finally:
            await store.close()
        # every node holds the write: read it through each node alone
        for node in cluster.nodes:
            alone = await ObjectStore.connect([node.url], name="admin",
                                              credentials=secured.credentials["admin"], tls_ca=secured.tls.ca)
            try:
                got = await alone.get(VMS, "default", "vm-r3")
                assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
            finally:
                await alone.close()
    finally:
        cluster.stop()
