"""The installation's private CA and the server certificates it issues (virt-api, nats-server).

Owns: generating (with ``cryptography``) and re-using the CA key/cert (``ca.crt``/``ca.key`` in
one directory) and issuing a server certificate for a set of IP addresses and DNS names, stored
as PEM files with private keys mode 0600. Who uses which certificate is the caller's business:
virt-api's serving certificate (:mod:`services.virt_api.tls`), nats-server's certificate for
client and route TLS (``virtctl up``).

Keys are ECDSA P-256 (fast to generate, accepted by Go's crypto/tls, which kubectl and
nats-server use); the CA is valid 10 years, a server certificate 1 year and is re-issued when
it expires within 30 days, no longer covers the requested hosts, or was not signed by the CA.
A server certificate carries both ``serverAuth`` and ``clientAuth`` usages: nats-server
presents the same certificate when it dials a route to another cluster node.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CA_DAYS = 3650
_SERVING_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA's PEM files and its loaded certificate and key."""

    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def apply_ca(directory: Path) -> CertificateAuthority:
    """The CA in ``directory`` (``ca.crt``, ``ca.key``), made when missing or expiring within
    30 days (a new CA invalidates every certificate it issued: they are re-issued by
    :func:`apply_server_certificate` because their signature no longer verifies)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    now = dt.datetime.now(dt.timezone.utc)
    if cert_path.exists() and key_path.exists():
        cert = _load_cert(cert_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if _is_fresh(cert, now) and isinstance(key, ec.EllipticCurvePrivateKey):
            return CertificateAuthority(cert_path, key_path, cert, key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = compute_ca_certificate(key, now)
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(cert_path, key_path, cert, key)


def apply_server_certificate(ca: CertificateAuthority, cert_path: Path, key_path: Path, hosts: tuple[str, ...],
                             common_name: str) -> bool:
    """Make sure ``cert_path``/``key_path`` hold a certificate of ``ca`` for ``hosts`` (entries
    that parse as IP addresses become IP SANs, the others DNS SANs); returns True when it issued
    a new one. Existing, still valid files covering ``hosts`` are kept."""
    now = dt.datetime.now(dt.timezone.utc)
    if cert_path.exists() and key_path.exists() and _serves(_load_cert(cert_path), ca.cert, hosts, now):
        return False
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = compute_serving_certificate(key, ca.key, ca.cert, hosts, now, common_name=common_name)
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


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
    *,
    common_name: str = "virt-api",
) -> x509.Certificate:
    """A server certificate for ``hosts`` (SANs), signed by the CA, valid one year from ``now``,
    usable as a TLS server and (for nats-server routes) as a TLS client."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_SERVING_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
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
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
