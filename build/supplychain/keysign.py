"""Key-based signing and verification (cosign's `--key` mode, the usual air-gapped choice).

Owns the key pair files and the bundle shape for signatures made with a long-lived key instead
of a Fulcio certificate:
* private key: PKCS#8 PEM, encrypted with the password in $KUBEVIRT_BUILD_KEY_PASSWORD (or
  $COSIGN_PASSWORD); unencrypted only when asked for (`--no-password`); public key: PKIX "PUBLIC KEY" PEM, the form `cosign verify --key`
  reads; ECDSA P-256 with SHA-256 (cosign's default key type);
* bundle: sigstore bundle v0.3 JSON whose verificationMaterial is `publicKey.hint` (the key id:
  hex SHA-256 of the DER SubjectPublicKeyInfo) with no certificate and no transparency-log entry
  (cosign `--tlog-upload=false`), carrying a DSSE envelope (sigstore.dsse's PAE and signer) or a
  messageSignature over the artifact's SHA-256.
The cryptography is the `cryptography` library's and sigstore-python's DSSE code; this module
only chooses the files and the JSON shape.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore.dsse import Envelope, Statement, _sign, _verify

from supplychain.errors import SupplyChainError

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PASSWORD_ENV = ("KUBEVIRT_BUILD_KEY_PASSWORD", "COSIGN_PASSWORD")


def _password() -> bytes | None:
    for name in PASSWORD_ENV:
        if os.environ.get(name):
            return os.environ[name].encode()
    return None


def compute_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: the `publicKey.hint` of our bundles."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def apply_generate_key_pair(prefix: Path, allow_no_password: bool = False) -> tuple[Path, Path]:
    """Write `<prefix>.key` (PKCS#8 PEM, encrypted with the password from the environment) and
    `<prefix>.pub`; refuses to overwrite, and refuses to write an unencrypted private key unless
    `allow_no_password` (cosign generate-key-pair also asks for a password). Returns (private,
    public) paths."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise SupplyChainError(f"{path} exists; refusing to overwrite a key")
    password = _password()
    if password is None and not allow_no_password:
        raise SupplyChainError(f"{PASSWORD_ENV[0]} is not set: the private key would be written unencrypted "
                               "(set it, or pass --no-password to accept an unencrypted key)")
    key = ec.generate_private_key(ec.SECP256R1())
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    key_path.chmod(0o600)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a P-256 private key (password from the environment). One-line SupplyChainError when
    the file is missing, the password is wrong or absent, or the key is not ECDSA P-256."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SupplyChainError(f"signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=_password())
    except TypeError:
        raise SupplyChainError(f"signing key {path} is encrypted: set {PASSWORD_ENV[0]}") from None
    except ValueError as exc:
        raise SupplyChainError(f"signing key {path}: cannot load ({str(exc).splitlines()[0]}; "
                               "wrong password?)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SupplyChainError(f"signing key {path}: not an ECDSA P-256 key")
    return key


def read_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load a PEM P-256 public key; one-line SupplyChainError otherwise."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise SupplyChainError(f"public key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SupplyChainError(f"public key {path}: not a PEM public key ({str(exc).splitlines()[0]})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SupplyChainError(f"public key {path}: not an ECDSA P-256 key")
    return key


class KeySigner:
    """Signs with one private key; `identity` names the key ("key:<key id>")."""

    def __init__(self, key: ec.EllipticCurvePrivateKey):
        self._key = key
        self.key_id = compute_key_id(key.public_key())
        self.identity = f"key:{self.key_id}"

    def _material(self) -> dict[str, Any]:
        return {"publicKey": {"hint": self.key_id}, "tlogEntries": []}

    def sign_dsse(self, statement: Statement) -> str:
        """A bundle (JSON text) carrying a DSSE envelope over the in-toto `statement`."""
        envelope = json.loads(_sign(self._key, statement).to_json())
        return json.dumps({"mediaType": BUNDLE_MEDIA_TYPE, "verificationMaterial": self._material(),
                           "dsseEnvelope": envelope}, indent=2)

    def sign_artifact(self, data: bytes) -> str:
        """A bundle (JSON text) carrying an ECDSA signature over `data` (SHA-256)."""
        sig = self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        return json.dumps({"mediaType": BUNDLE_MEDIA_TYPE, "verificationMaterial": self._material(),
                           "messageSignature": {
                               "messageDigest": {"algorithm": "SHA2_256",
                                                 "digest": base64.b64encode(hashlib.sha256(data).digest()).decode()},
                               "signature": base64.b64encode(sig).decode()}}, indent=2)


class KeyVerifier:
    """Verifies key-based bundles against pinned public keys only (by key id)."""

    def __init__(self, paths: list[Path]):
        if not paths:
            raise SupplyChainError("no public key given")
        self._keys = {}
        for path in paths:
            key = read_public_key(path)
            self._keys[compute_key_id(key)] = key
        self.identity = "key " + ", ".join(sorted(k[:16] for k in self._keys))

    def _key_for(self, bundle: dict) -> ec.EllipticCurvePublicKey:
        if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise SupplyChainError(f"bundle media type {bundle.get('mediaType')!r} is not {BUNDLE_MEDIA_TYPE}")
        material = bundle.get("verificationMaterial", {})
        if "publicKey" not in material:
            raise SupplyChainError("bundle is not signed with a key (it carries a certificate)")
        hint = material["publicKey"].get("hint", "")
        if hint not in self._keys:
            raise SupplyChainError(f"bundle signed by key {hint[:16] or '?'}, not a pinned key")
        return self._keys[hint]

    def verify_dsse(self, raw: bytes) -> tuple[str, bytes]:
        """(payloadType, payload) of a verified DSSE bundle; SupplyChainError otherwise."""
        try:
            bundle = json.loads(raw)
        except ValueError:
            raise SupplyChainError("bundle is not JSON") from None
        key = self._key_for(bundle)
        if "dsseEnvelope" not in bundle:
            raise SupplyChainError("bundle carries no DSSE envelope")
        try:
            envelope = Envelope._from_json(json.dumps(bundle["dsseEnvelope"]))
            payload = _verify(key, envelope)
        except Exception as exc:  # sigstore's VerificationError / InvalidEnvelope / pydantic errors
            raise SupplyChainError(f"DSSE signature does not verify with the pinned key ({exc})") from None
        return envelope._inner.payload_type, payload

    def verify_artifact(self, data: bytes, raw: bytes) -> None:
        """Check a message-signature bundle over `data`; SupplyChainError otherwise."""
        try:
            bundle = json.loads(raw)
        except ValueError:
            raise SupplyChainError("bundle is not JSON") from None
        key = self._key_for(bundle)
        sig = bundle.get("messageSignature", {})
        want = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if sig.get("messageDigest", {}).get("digest") != want:
            raise SupplyChainError("bundle digest does not match the artifact")
        try:
            key.verify(base64.b64decode(sig.get("signature", "")), data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise SupplyChainError("signature does not verify with the pinned key") from None
