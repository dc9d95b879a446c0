"""A nats-server secured as an installation's (TLS from a fresh CA, one user per role of
shared.nats_auth) and stores connected as those roles, for the integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.nats_auth import (
    apply_credentials,
    compute_authorization_config,
    compute_writable_plurals,
    hash_authorization_entries,
)
from shared.natsserver import NatsServer, NatsTls
from shared.pki import apply_ca, apply_server_certificate
from shared.store import ObjectStore


@dataclass(frozen=True)
class Secured:
    tls: NatsTls
    authorization: str
    credentials: dict[str, Path]


def make_secured(directory: Path) -> Secured:
    ca = apply_ca(directory / "ca")
    tls = NatsTls(cert=directory / "server.crt", key=directory / "server.key", ca=ca.cert_path)
    apply_server_certificate(ca, tls.cert, tls.key, ("127.0.0.1", "localhost"), common_name="nats-server")
    credentials = apply_credentials(directory / "credentials")
    return Secured(tls, compute_authorization_config(hash_authorization_entries(credentials)), credentials)


async def store_as(server: NatsServer, secured: Secured, role: str) -> ObjectStore:
    """A store connected as ``role``'s NATS user, knowing what that user may write (as
    ``shared.service.ServiceContext.connect_store`` makes a service's)."""
    return await ObjectStore.connect([server.url], name=role, credentials=secured.credentials[role],
                                     tls_ca=secured.tls.ca, op_timeout=3.0,
                                     writable_plurals=compute_writable_plurals(role))
