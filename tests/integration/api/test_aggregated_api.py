"""virt-api as an aggregated API server: a real virt-api process with kube-apiserver's
request-header options and ``--authorization-mode delegated`` (a ready-made serving certificate,
no CA key), asking the mock Kubernetes API (tests/mock_kubernetes_api.py) for TokenReviews and
SubjectAccessReviews. The front proxy's CA and client certificates are made here with
``cryptography``, as a cluster's front-proxy CA issues kube-apiserver's."""
from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.virt_api.delegation import KubernetesDelegate
from shared.kube_client import api_client_from
from shared.pki import apply_ca, apply_server_certificate
from tests.mock_kubernetes_api import MockKubernetesApi, serve_mock

ROOT = Path(__file__).resolve().parents[3]
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
PROXY_NAME = "front-proxy-client"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(directory: Path, stem: str, cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA (``issuer`` None) or a client certificate signed by ``issuer``, written as <stem>.crt/.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1)))
    if issuer is None:
        builder = builder.issuer_name(_name(cn)).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        signer = key
    else:
        builder = (builder.issuer_name(issuer[0].subject)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        signer = issuer[1]
    cert = builder.sign(signer, hashes.SHA256())
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return cert, key


class _MockThread:
    """The mock Kubernetes API on an event loop of its own thread (the virt-api process outlives
    each test's loop)."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._context = serve_mock(directory)
        self.mock, self.kubeconfig = asyncio.run_coroutine_threadsafe(
            self._context.__aenter__(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._context.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Aggregated:
    url: str
    mock: MockKubernetesApi
    pki: Path
    serving_ca: Path


@pytest.fixture(scope="module")
def aggregated(nats_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregated]:
    tmp = tmp_path_factory.mktemp("aggregated")
    pki = tmp / "pki"
    pki.mkdir()
    proxy_ca = _issue(pki, "front-proxy-ca", "front-proxy-ca", None)
    _issue(pki, "front-proxy-client", PROXY_NAME, proxy_ca)
    _issue(pki, "intruder", "intruder", proxy_ca)
    other_ca = _issue(pki, "other-ca", "other-ca", None)
    _issue(pki, "other-client", PROXY_NAME, other_ca)
    serving = apply_ca(tmp / "serving")  # the serving certificate is made elsewhere: no CA key for virt-api
    apply_server_certificate(serving, pki / "serving.crt", pki / "serving.key", ("127.0.0.1",), common_name="virt-api")
    mock_thread = _MockThread(tmp)
    state_dir, port_file = tmp / "state", tmp / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.virt_api.main", "--nats", nats_server.url,
         "--bucket-prefix", f"agg{uuid.uuid4().hex[:8]}_", "--state-dir", str(state_dir), "--port", "0",
         "--port-file", str(port_file), "--log-format", "text",
         "--tls-cert-file", str(pki / "serving.crt"), "--tls-private-key-file", str(pki / "serving.key"),
         "--authorization-mode", "delegated", "--kubeconfig", str(mock_thread.kubeconfig),
         "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
         "--requestheader-allowed-names", PROXY_NAME,
         "--requestheader-username-headers", "X-Remote-User",
         "--requestheader-group-headers", "X-Remote-Group",
         "--requestheader-extra-headers-prefix", "X-Remote-Extra-"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"virt-api exited: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail("virt-api did not write its port within 30 s")
            time.sleep(0.05)
        yield Aggregated(f"https://127.0.0.1:{port_file.read_text().strip()}", mock_thread.mock, pki,
                         serving.cert_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        mock_thread.close()
    assert not (state_dir / "pki").exists() and not (state_dir / "token").exists()


def _ssl(env: Aggregated, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(env.serving_ca))
    if client is not None:
        ctx.load_cert_chain(str(env.pki / f"{client}.crt"), str(env.pki / f"{client}.key"))
    return ctx


async def _get(env: Aggregated, path: str, *, client: str | None = None,
               headers: list[tuple[str, str]] | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(env.url + path, ssl=_ssl(env, client), headers=headers or []) as resp:
            if resp.content_type != "application/json":
                return resp.status, {"text": await resp.text()}
            return resp.status, await resp.json()


async def test_a_front_proxied_allowed_user_is_served_and_reviewed_with_the_request_attributes(aggregated):
    aggregated.mock.allowed_users.add("alice")
    before = len(aggregated.mock.access_reviews)
    headers = [("X-Remote-User", "alice"), ("X-Remote-Group", "devs"), ("X-Remote-Group", "system:authenticated"),
               ("X-Remote-Extra-Scopes", "vm-admin"), ("X-Remote-Extra-Acme.com%2Fproject", "p1")]
    status, body = await _get(aggregated, VMS, client="front-proxy-client", headers=headers)
    assert status == 200, body
    assert body["kind"] == "VirtualMachineList"
    assert aggregated.mock.access_reviews[before:] == [{
        "user": "alice", "groups": ["devs", "system:authenticated"],
        "extra": {"acme.com/project": ["p1"], "scopes": ["vm-admin"]},
        "resourceAttributes": {"namespace": "default", "verb": "list", "group": "kubevirt.io", "version": "v1",
                               "resource": "virtualmachines"}}]
    # the decision is kept for a while: the same request again asks nothing
    status, _ = await _get(aggregated, VMS, client="front-proxy-client", headers=headers)
    assert status == 200 and len(aggregated.mock.access_reviews) == before + 1
    assert aggregated.mock.token_reviews == []


async def test_a_denied_user_gets_kubernetes_forbidden_status(aggregated):
    status, body = await _get(aggregated, VMS + "/vm1/status", client="front-proxy-client",
                              headers=[("X-Remote-User", "mallory")])
    assert status == 403
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": 'virtualmachines.kubevirt.io "vm1" is forbidden: User "mallory" cannot get resource '
                   '"virtualmachines/status" in API group "kubevirt.io" in the namespace "default"',
        "details": {"name": "vm1", "group": "kubevirt.io", "kind": "virtualmachines"}}
    assert aggregated.mock.access_reviews[-1] == {
        "user": "mallory", "resourceAttributes": {
            "namespace": "default", "verb": "get", "group": "kubevirt.io", "version": "v1",
            "resource": "virtualmachines", "subresource": "status", "name": "vm1"}}


async def test_remote_user_headers_without_the_front_proxy_certificate_are_ignored(aggregated):
    aggregated.mock.allowed_users.add("alice")
    before = len(aggregated.mock.access_reviews)
    status, body = await _get(aggregated, VMS, headers=[("X-Remote-User", "alice"), ("X-Remote-Group", "system:masters")])
    assert status == 401
    assert (body["reason"], body["message"]) == ("Unauthorized", "Unauthorized")
    assert len(aggregated.mock.access_reviews) == before


async def test_a_client_certificate_whose_name_is_not_allowed_names_nobody(aggregated):
    aggregated.mock.allowed_users.add("alice")
    before = len(aggregated.mock.access_reviews)
    status, body = await _get(aggregated, VMS, client="intruder", headers=[("X-Remote-User", "alice")])
    assert status == 401 and body["reason"] == "Unauthorized"
    assert len(aggregated.mock.access_reviews) == before


async def test_a_client_certificate_of_another_ca_fails_the_handshake(aggregated):
    with pytest.raises(aiohttp.ClientError):
        await _get(aggregated, VMS, client="other-client", headers=[("X-Remote-User", "alice")])


async def test_bearer_tokens_are_reviewed_by_the_cluster(aggregated):
    aggregated.mock.tokens["token-of-bob"] = {"username": "system:serviceaccount:default:bob", "uid": "u-1",
                                              "groups": ["system:serviceaccounts"]}
    aggregated.mock.allowed_users.add("system:serviceaccount:default:bob")
    status, body = await _get(aggregated, "/apis/kubevirt.io/v1/virtualmachines?watch=false",
                              headers=[("Authorization", "Bearer token-of-bob")])
    assert status == 200, body
    assert aggregated.mock.token_reviews[-1] == {"token": "token-of-bob"}
    assert aggregated.mock.access_reviews[-1] == {
        "user": "system:serviceaccount:default:bob", "groups": ["system:serviceaccounts"], "uid": "u-1",
        "resourceAttributes": {"verb": "list", "group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"}}
    status, body = await _get(aggregated, VMS, headers=[("Authorization", "Bearer unknown")])
    assert status == 401 and body["reason"] == "Unauthorized"


async def test_non_resource_paths_are_reviewed_as_paths(aggregated):
    status, body = await _get(aggregated, "/apis", client="front-proxy-client", headers=[("X-Remote-User", "eve")])
    assert status == 403
    assert body["message"] == 'forbidden: User "eve" cannot get path "/apis"'
    assert aggregated.mock.access_reviews[-1] == {"user": "eve",
                                                  "nonResourceAttributes": {"path": "/apis", "verb": "get"}}
    assert await _get(aggregated, "/healthz") == (200, {"text": "ok"})  # the probes need nobody


async def test_the_request_header_settings_are_read_from_the_cluster(tmp_path):
    async with serve_mock(tmp_path) as (mock, kubeconfig):
        mock.configmaps[("kube-system", "extension-apiserver-authentication")] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {"client-ca-file": "ignored", "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\nx\n",
                     "requestheader-allowed-names": '["front-proxy-client"]',
                     "requestheader-username-headers": '["X-Remote-User"]',
                     "requestheader-group-headers": '["X-Remote-Group"]',
                     "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'}}
        delegate = KubernetesDelegate(api_client_from(kubeconfig))
        try:
            config = await delegate.read_request_header_config()
        finally:
            delegate.close()
    assert config.client_ca_pem == "-----BEGIN CERTIFICATE-----\nx\n"
    assert (config.allowed_names, config.username_headers, config.group_headers, config.extra_header_prefixes) == (
        ("front-proxy-client",), ("X-Remote-User",), ("X-Remote-Group",), ("X-Remote-Extra-",))
    assert ("GET", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication") in mock.requests


def test_a_wrong_combination_of_options_is_one_line_and_a_non_zero_exit(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "services.virt_api.main", "--nats", "nats://127.0.0.1:1",
                           "--state-dir", str(tmp_path), "--requestheader-client-ca-file", str(ca)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "virt-api: --requestheader-client-ca-file needs --authorization-mode delegated")
    assert "Traceback" not in proc.stderr
