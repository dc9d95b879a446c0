"""TLS material for virt-api: a private CA and a serving certificate signed by it.

Owns: generating (with ``cryptography``) and re-using the CA key/cert and the server key/cert for
``127.0.0.1``/``localhost`` (plus any extra host names), stored as PEM files in one directory, and
building the ``ssl.SSLContext`` the server listens with. The kubeconfig that carries the CA to
clients is written by ``services.virtctl.kubeconfig``.

Keys are ECDSA P-256 (fast to generate, accepted by Go's crypto/tls that kubectl uses); the CA is
valid 10 years, the serving certificate 1 year and is re-issued when it expires within 30 days
or no longer covers the requested hosts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
_CA_DAYS = 3650
_SERVING_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServingPki:
    """Paths of the PEM files: CA certificate (what clients trust), serving cert and key."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    def server_ssl_context(self) -> ssl.SSLContext:
        """An SSL context serving ``cert``/``key`` (TLS 1.2+)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this CA (for tests and virtctl health checks)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def apply_serving_pki(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> ServingPki:
    """Make sure ``directory`` holds a CA and a serving certificate for ``hosts``; return the paths.

    Existing, still valid files are kept (so a kubeconfig written earlier keeps working across
    restarts). Private keys are written with mode 0600. ``hosts`` entries that parse as IP
    addresses become IP SANs, the others DNS SANs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = ServingPki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        cert=directory / "apiserver.crt",
        key=directory / "apiserver.key",
    )
    now = dt.datetime.now(dt.timezone.utc)
    if pki.ca_cert.exists() and pki.ca_key.exists() and _is_fresh(_load_cert(pki.ca_cert), now):
        ca_cert = _load_cert(pki.ca_cert)
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = compute_ca_certificate(ca_key, now)
        _write_key(pki.ca_key, ca_key)
        pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        pki.cert.unlink(missing_ok=True)  # a new CA invalidates the old serving cert
    if not (pki.cert.exists() and pki.key.exists() and _serves(_load_cert(pki.cert), ca_cert, hosts, now)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = compute_serving_certificate(key, ca_key, ca_cert, hosts, now)  # type: ignore[arg-type]
        _write_key(pki.key, key)
        pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki


def compute_ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    """A self-signed CA certificate (CN ``kubevirt-py-ca``) valid for 10 years from ``now``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubevirt-py-ca")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def compute_serving_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: tuple[str, ...],
    now: dt.datetime,
) -> x509.Certificate:
    """A server certificate for ``hosts`` (SANs), signed by the CA, valid one year from ``now``."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "virt-api")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_SERVING_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                content_commitment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _is_fresh(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc - now > _RENEW_BEFORE


def _serves(cert: x509.Certificate, ca_cert: x509.Certificate, hosts: tuple[str, ...], now: dt.datetime) -> bool:
    if not _is_fresh(cert, now) or cert.issuer != ca_cert.subject:
        return False
    try:
        ca_key, digest = ca_cert.public_key(), cert.signature_hash_algorithm
        if not isinstance(ca_key, ec.EllipticCurvePublicKey) or digest is None:
            return False  # not signed by our ECDSA CA: issue a new one
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # noqa: BLE001 - any mismatch means "issue a new one"
        return False
    have = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    return set(hosts) <= have


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
