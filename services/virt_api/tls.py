"""TLS material for virt-api: the installation's CA and a serving certificate signed by it, or a
ready-made certificate (``--tls-cert-file``/``--tls-private-key-file``, as on a Kubernetes cluster).

Owns: where virt-api keeps its own (``ca.crt``/``ca.key``, ``apiserver.crt``/``apiserver.key`` in one
directory) for ``127.0.0.1``/``localhost`` (plus any extra host names), and building the
``ssl.SSLContext`` the server listens with (:func:`server_ssl_context`: asking for the front
proxy's client certificate when one is expected). Making the CA and issuing certificates (ECDSA P-256,
renewal rules) is :mod:`shared.pki`; the kubeconfig that carries the CA to clients is written by
``services.virtctl.kubeconfig``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from shared.pki import apply_ca, apply_server_certificate

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServingPki:
    """Paths of the PEM files: CA certificate (what clients trust), serving cert and key."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    def server_ssl_context(self, client_ca_pem: str | None = None) -> ssl.SSLContext:
        """:func:`server_ssl_context` of ``cert``/``key``."""
        return server_ssl_context(self.cert, self.key, client_ca_pem)

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this CA (for tests and virtctl health checks)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def server_ssl_context(cert: Path, key: Path, client_ca_pem: str | None = None) -> ssl.SSLContext:
    """An SSL context serving ``cert``/``key`` (PEM files; TLS 1.2+). With ``client_ca_pem`` (the
    request-header CA) it asks clients for a certificate, optionally: one that does not chain to
    that CA, or is not for client authentication, fails the handshake (OpenSSL's ``ssl_client``
    purpose); clients without one (bearer tokens) are served as before. That CA is the only one
    trusted for client certificates, so a certificate the handshake accepted is the front proxy's.
    Raises ``ssl.SSLError`` / OSError for unusable files."""
    # not create_default_context: it would also trust the system's CAs for client certificates
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca_pem is not None:
        ctx.load_verify_locations(cadata=client_ca_pem)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def apply_serving_pki(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> ServingPki:
    """Make sure ``directory`` holds the installation's CA (:func:`shared.pki.apply_ca`) and a
    serving certificate for ``hosts``; return the paths.

    Existing, still valid files are kept (so a kubeconfig written earlier keeps working across
    restarts). Private keys are written with mode 0600. ``hosts`` entries that parse as IP
    addresses become IP SANs, the others DNS SANs.
    """
    ca = apply_ca(directory)
    pki = ServingPki(ca_cert=ca.cert_path, ca_key=ca.key_path, cert=directory / "apiserver.crt",
                     key=directory / "apiserver.key")
    apply_server_certificate(ca, pki.cert, pki.key, hosts, common_name="virt-api")
    return pki
