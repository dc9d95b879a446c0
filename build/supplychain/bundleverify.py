"""Which signatures `verify` accepts: sigstore bundles checked against a trusted root and an
expected identity, or key-based bundles checked against pinned public keys.

Owns the choice between the two and one interface for `verify`: `verify_dsse(raw) ->
(payloadType, payload)` and `verify_artifact(data, raw)`, each raising a one-line
SupplyChainError. Sigstore bundles are checked by sigstore-python's own Verifier (certificate
chain to the trusted root's CA, SCT, transparency-log inclusion and SET, identity + issuer
policy); key bundles by keysign.KeyVerifier.
"""
from __future__ import annotations

from pathlib import Path

from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy

from supplychain.errors import SupplyChainError


def _one_line(exc: BaseException) -> str:
    return " ".join((str(exc).strip() or type(exc).__name__).split())[:300]


class SigstoreBundleVerifier:
    """Keyless bundles: `trusted_root` JSON file, certificate SAN `identity`, OIDC `issuer`."""

    def __init__(self, trusted_root: Path, identity: str, issuer: str):
        try:
            self._verifier = Verifier(trusted_root=TrustedRoot.from_file(str(trusted_root)))
        except Exception as exc:  # a malformed root must stop everything
            raise SupplyChainError(f"trusted root {trusted_root}: {_one_line(exc)}") from None
        self._policy = policy.Identity(identity=identity, issuer=issuer)
        self.identity = f"{identity} (issuer {issuer})"

    def verify_dsse(self, raw: bytes) -> tuple[str, bytes]:
        """(payloadType, payload) of a verified DSSE bundle."""
        try:
            return self._verifier.verify_dsse(Bundle.from_json(raw), self._policy)
        except Exception as exc:
            raise SupplyChainError(_one_line(exc)) from None

    def verify_artifact(self, data: bytes, raw: bytes) -> None:
        """Check a message-signature bundle over `data`."""
        try:
            self._verifier.verify_artifact(data, Bundle.from_json(raw), self._policy)
        except Exception as exc:
            raise SupplyChainError(_one_line(exc)) from None


def read_bundle_verifier(keys: tuple[Path, ...], trusted_root: Path | None, identity: str | None,
                         issuer: str | None):
    """KeyVerifier when `keys` are given, else a SigstoreBundleVerifier (which then needs the
    trusted root, identity and issuer). One-line SupplyChainError when the options are missing."""
    if keys:
        from supplychain.keysign import KeyVerifier

        return KeyVerifier(list(keys))
    if trusted_root is None or not identity or not issuer:
        raise SupplyChainError("signature: give --key PUB, or --trusted-root with --certificate-identity and "
                               "--certificate-oidc-issuer")
    return SigstoreBundleVerifier(trusted_root, identity, issuer)
