"""TLS material (CA + serving cert) and kubeconfig files: generated once, reused, readable by clients."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from services.virt_api.auth import apply_token_file, is_authorized
from services.virt_api.tls import apply_serving_pki
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig, load_cluster_access


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def test_pki_is_created_once_and_reused(tmp_path: Path):
    first = apply_serving_pki(tmp_path)
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    assert sans(first.cert) == {"127.0.0.1", "localhost"}
    assert oct(first.key.stat().st_mode & 0o777) == "0o600" and oct(first.ca_key.stat().st_mode & 0o777) == "0o600"
    again = apply_serving_pki(tmp_path)
    assert (again.ca_cert.read_bytes(), again.cert.read_bytes()) == (ca, cert)
    first.server_ssl_context()  # the pair loads
    ctx = first.client_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_a_new_host_reissues_the_serving_cert_under_the_same_ca(tmp_path: Path):
    first = apply_serving_pki(tmp_path)
    ca = first.ca_cert.read_bytes()
    second = apply_serving_pki(tmp_path, ("127.0.0.1", "localhost", "10.0.0.5"))
    assert second.ca_cert.read_bytes() == ca
    assert sans(second.cert) == {"127.0.0.1", "localhost", "10.0.0.5"}


def test_token_file_is_stable_and_checked_in_constant_time(tmp_path: Path):
    token = apply_token_file(tmp_path / "token")
    assert apply_token_file(tmp_path / "token") == token and len(token) >= 43
    assert is_authorized(f"Bearer {token}", token)
    assert not is_authorized(f"Basic {token}", token)
    assert not is_authorized("Bearer nope", token)
    assert not is_authorized(None, token)


def test_kubeconfig_round_trip_and_unchanged_detection(tmp_path: Path):
    pki = apply_serving_pki(tmp_path / "pki")
    path = tmp_path / "kubeconfig"
    config = compute_kubeconfig("https://127.0.0.1:8443", pki.ca_cert.read_bytes(), "secret", namespace="demo")
    assert apply_kubeconfig(path, config) is True
    assert apply_kubeconfig(path, config) is False
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    access = load_cluster_access(path)
    assert (access.server, access.token, access.namespace) == ("https://127.0.0.1:8443", "secret", "demo")
    assert access.ssl_context is not None and access.ssl_context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("content,message", [
    pytest.param(None, "not found; run 'virtctl up'", id="missing"),
    pytest.param("apiVersion: v1\nkind: Config\n", "has no current-context", id="no-context"),
    pytest.param("current-context: x\ncontexts: []\n", "no context named 'x'", id="unknown-context"),
    pytest.param("apiVersion: v1\ngarbage: [\n", "is not valid YAML (line 3): expected the node content", id="not-yaml"),
    pytest.param("- a\n- b\n", "is not a YAML mapping", id="not-a-mapping"),
])
def test_bad_kubeconfigs_are_named_clearly(tmp_path: Path, content, message):
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises((FileNotFoundError, ValueError), match=re.escape(message)):
        load_cluster_access(path)
