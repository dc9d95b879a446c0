"""The secured NATS of an installation: certificate, users and the server's authorization block.

Owns :func:`apply_nats_security`: before nats-server starts, the installation's CA
(:func:`shared.pki.apply_ca`, the one virt-api serves with) issues the server's certificate for
the addresses clients and routes dial, every role of :data:`shared.nats_auth.ROLES` gets its
credentials file (kept when it exists: running services hold their passwords), and the
``authorization`` block is computed from them with bcrypt'd passwords. No anonymous user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.nats_auth import apply_credentials, compute_authorization_config, hash_authorization_entries
from shared.natsserver import NatsTls
from shared.pki import apply_ca, apply_server_certificate

#: Names nats-server's certificate covers on one machine.
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class NatsSecurity:
    """What a secured nats-server and its clients need: the TLS files, the text of the
    ``authorization`` block, and role -> credentials file."""

    tls: NatsTls
    authorization: str
    credentials: Mapping[str, Path]


def apply_nats_security(tls: NatsTls, ca_dir: Path, credentials_dir: Path, *,
                        hosts: tuple[str, ...] = LOCAL_HOSTS, bucket_prefix: str = "kv_") -> NatsSecurity:
    """Make (or keep) the CA in ``ca_dir`` (whose ``ca.crt`` must be ``tls.ca``), the server
    certificate ``tls.cert``/``tls.key`` for ``hosts`` (IPs and names; a cluster node lists its
    own address), one credentials file per role in ``credentials_dir`` (0600); return them with
    the authorization block for buckets named ``<bucket_prefix><plural>``."""
    ca = apply_ca(ca_dir)
    if ca.cert_path != tls.ca:
        raise ValueError(f"the NATS CA {tls.ca} is not the installation's CA {ca.cert_path}")
    apply_server_certificate(ca, tls.cert, tls.key, hosts, common_name="nats-server")
    files = apply_credentials(credentials_dir)
    authorization = compute_authorization_config(hash_authorization_entries(files, bucket_prefix))
    return NatsSecurity(tls=tls, authorization=authorization, credentials=files)
