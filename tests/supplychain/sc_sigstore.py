"""Test-only sigstore instance: a CA, a CT log key and a Rekor log key made in the test, with
in-process stand-ins for Fulcio and Rekor, so sigstore-python's real Signer and Verifier run with
no network. Shapes follow sigstore/protobuf-specs (TrustedRoot, Bundle v0.3), RFC 6962 (SCT over
the precertificate TBS), and Rekor v1 (hashedrekord/dsse 0.0.1 bodies, signed checkpoint, SET).
Never shipped: production signing uses the public-good instance through an OIDC identity."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
import time
from pathlib import Path

import jwt
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from sigstore._internal.fulcio.client import FulcioCertificateSigningResponse
from sigstore._internal.rekor import RekorLogSubmitter
from sigstore._internal.rekor.client import RekorClient
from sigstore.models import TransparencyLogEntry, TrustedRoot
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_len(len(raw)) + raw


class TestInstance:
    """Keys and trust root of one throw-away sigstore instance."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "kubevirt-py-test"):
        self.name = name
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256()))
        self.rekor_log_id = hashlib.sha256(_spki(self.rekor_key)).digest()
        self.ct_log_id = hashlib.sha256(_spki(self.ct_key)).digest()
        self.entries = 0

    def trusted_root_json(self) -> dict:
        """The TrustedRoot document (media type ...trustedroot+json;version=0.1)."""
        start = {"start": "2020-01-01T00:00:00Z"}

        def log(key, url):
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": base64.b64encode(_spki(key)).decode(),
                                  "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": start},
                    "logId": {"keyId": base64.b64encode(hashlib.sha256(_spki(key)).digest()).decode()}}

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, "https://rekor.test.invalid")],
            "ctlogs": [log(self.ct_key, "https://ctfe.test.invalid")],
            "certificateAuthorities": [{
                "subject": {"organization": self.name, "commonName": f"{self.name} CA"},
                "uri": "https://fulcio.test.invalid",
                "certChain": {"certificates": [{"rawBytes": base64.b64encode(
                    self.ca_cert.public_bytes(serialization.Encoding.DER)).decode()}]},
                "validFor": start}],
            "timestampAuthorities": [],
        }

    def apply_client_trust_config(self, path: Path, url: str | None = None) -> Path:
        """Write a ClientTrustConfig (trusted root + signing config), the form `sigstore
        --trust-config` and `kubevirt-build sign --trust-config` read. The service URLs are
        `url` (a SigstoreServer serving this instance) or never-contacted .invalid names."""
        start = {"start": "2020-01-01T00:00:00Z"}
        fulcio, rekor = (url, url) if url else ("https://fulcio.test.invalid", "https://rekor.test.invalid")

        def service(url):
            return {"url": url, "majorApiVersion": 1, "validFor": start, "operator": self.name}

        doc = {"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
               "trustedRoot": self.trusted_root_json(),
               "signingConfig": {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                                 "caUrls": [service(fulcio)],
                                 "oidcUrls": [service("https://oauth2.test.invalid")],
                                 "rekorTlogUrls": [service(rekor)],
                                 "tsaUrls": [], "rekorTlogConfig": {"selector": "ANY"},
                                 "tsaConfig": {"selector": "ANY"}}}
        Path(path).write_text(json.dumps(doc, indent=2))
        return Path(path)

    def apply_trusted_root(self, path: Path) -> Path:
        """Write the trusted root JSON to `path`."""
        Path(path).write_text(json.dumps(self.trusted_root_json(), indent=2))
        return Path(path)

    def trusted_root(self) -> TrustedRoot:
        from sigstore_models.trustroot.v1 import TrustedRoot as _Inner
        return TrustedRoot(_Inner.from_json(json.dumps(self.trusted_root_json())))

    def signing_context(self) -> SigningContext:
        """A real sigstore SigningContext wired to this instance's Fulcio and Rekor stand-ins."""
        return SigningContext(fulcio=FakeFulcio(self), rekor=FakeRekor(self), trusted_root=self.trusted_root())

    # -- certificate issuance ---------------------------------------------------------------
    def issue(self, public_key, identity: str, issuer: str, lifetime_s: int = 600,
              not_before: dt.datetime | None = None) -> x509.Certificate:
        """A Fulcio-shaped leaf certificate for `public_key` with an embedded SCT."""
        now = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
        serial = x509.random_serial_number()
        san = x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)

        def build(sct_value: bytes) -> x509.Certificate:
            return (
                x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.ca_cert.subject)
                .public_key(public_key).serial_number(serial)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(seconds=lifetime_s))
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
                .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), critical=False)
                .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2, _der_utf8(issuer)), critical=False)
                .add_extension(x509.UnrecognizedExtension(SCT_LIST, sct_value), critical=False)
                .sign(self.ca_key, hashes.SHA256()))

        placeholder = self._sct_ext(b"\0" * 71, 0)
        tbs = build(placeholder).tbs_precertificate_bytes
        ts = int(time.time() * 1000)
        issuer_hash = hashlib.sha256(_spki(self.ca_key)).digest()
        signed = (b"\x00\x00" + struct.pack(">Q", ts) + b"\x00\x01" + issuer_hash
                  + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return build(self._sct_ext(sig, ts))

    def _sct_ext(self, sig: bytes, ts: int) -> bytes:
        sct = (b"\x00" + self.ct_log_id + struct.pack(">Q", ts) + b"\x00\x00" + b"\x04\x03"
               + struct.pack(">H", len(sig)) + sig)
        body = struct.pack(">H", len(sct)) + sct
        lst = struct.pack(">H", len(body)) + body
        return b"\x04" + _der_len(len(lst)) + lst

    # -- transparency log ---------------------------------------------------------------------
    def log_entry(self, body: dict) -> TransparencyLogEntry:
        """Log a canonical body in a one-leaf tree: inclusion proof, signed checkpoint, SET."""
        return TransparencyLogEntry._from_v1_response(self.log_entry_response(body))

    def log_entry_response(self, body: dict) -> dict:
        """The Rekor v1 `POST /api/v1/log/entries` response for a logged canonical body."""
        canonical = rfc8785.dumps(body)
        index, self.entries = self.entries, self.entries + 1
        integrated = int(time.time())
        root = hashlib.sha256(b"\x00" + canonical).digest()
        note = f"{self.name}-rekor\n1\n{base64.b64encode(root).decode()}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + "\n" + f"\u2014 {self.name}-rekor {base64.b64encode(self.rekor_log_id[:4] + note_sig).decode()}\n"
        b64body = base64.b64encode(canonical).decode()
        set_payload = rfc8785.dumps({"body": b64body, "integratedTime": integrated,
                                     "logID": self.rekor_log_id.hex(), "logIndex": index})
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        return {f"{index:064x}": {
            "body": b64body, "integratedTime": integrated, "logID": self.rekor_log_id.hex(), "logIndex": index,
            "verification": {"signedEntryTimestamp": base64.b64encode(set_sig).decode(),
                             "inclusionProof": {"logIndex": 0, "rootHash": root.hex(), "treeSize": 1,
                                                "hashes": [], "checkpoint": checkpoint}}}}


def identity_token(identity: str, issuer: str, lifetime_s: int = 300) -> IdentityToken:
    """An OIDC-shaped token (unsigned for practical purposes, as sigstore's own tests use):
    the stand-in Fulcio takes the identity from `sub` and the issuer from `iss`."""
    return IdentityToken(identity_token_raw(identity, issuer, lifetime_s))


def identity_token_raw(identity: str, issuer: str, lifetime_s: int = 300) -> str:
    """The JWT text of identity_token (what `--identity-token FILE` holds)."""
    now = int(time.time())
    return jwt.encode({"iss": issuer, "aud": "sigstore", "sub": identity, "iat": now, "nbf": now - 5,
                       "exp": now + lifetime_s}, key="test-only-not-a-secret-0123456789abcdef", algorithm="HS256")


class _CertEndpoint:
    def __init__(self, instance: TestInstance):
        self.instance = instance

    def post(self, csr: x509.CertificateSigningRequest, token: IdentityToken) -> FulcioCertificateSigningResponse:
        cert = self.instance.issue(csr.public_key(), token._unverified_claims["sub"], token.issuer)
        return FulcioCertificateSigningResponse(cert, [self.instance.ca_cert])


class FakeFulcio:
    """Stands in for FulcioClient: `signing_cert.post(csr, token)` issues from the test CA."""

    def __init__(self, instance: TestInstance):
        self.signing_cert = _CertEndpoint(instance)


class FakeRekor(RekorLogSubmitter):
    """Stands in for RekorClient: turns proposed entries into Rekor v1 canonical bodies."""

    def __init__(self, instance: TestInstance):
        self.instance = instance

    def create_entry(self, request):
        return self.instance.log_entry(self.proposed_body(request))

    def proposed_body(self, request: dict) -> dict:
        """The canonical Rekor v1 body for a proposed entry (dsse: hashes of the envelope and
        payload instead of the envelope; hashedrekord: as proposed)."""
        if request["kind"] == "dsse":
            content = request["spec"]["proposedContent"]
            envelope = json.loads(content["envelope"])
            payload = base64.b64decode(envelope["payload"])
            body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
                "envelopeHash": {"algorithm": "sha256",
                                 "value": hashlib.sha256(content["envelope"].encode()).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": s["sig"], "verifier": content["verifiers"][0]}
                               for s in envelope["signatures"]]}}
        else:
            body = request
        return body

    def _build_hashed_rekord_request(self, hashed_input, signature, certificate):
        return RekorClient._build_hashed_rekord_request(self, hashed_input, signature, certificate)

    def _build_dsse_request(self, envelope, certificate):
        return RekorClient._build_dsse_request(self, envelope, certificate)


class SigstoreServer:
    """A private sigstore instance on loopback HTTP: Fulcio's `POST /api/v2/signingCert` (CSR
    in, chain with embedded SCT out, identity from the token's `sub`/`iss`) and Rekor v1's
    `POST /api/v1/log/entries`, both backed by a TestInstance. sigstore-python's own
    FulcioClient and RekorClient talk to it, as `kubevirt-build sign --trust-config` does."""

    def __init__(self, instance: TestInstance):
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                try:
                    status, doc = server._handle(self.path, body, self.headers.get("Authorization", ""))
                except Exception as exc:  # a refusal, as the real services send it
                    status, doc = 400, {"code": 400, "message": str(exc)}
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.instance = instance
        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, path: str, body: dict, auth: str) -> tuple[int, dict]:
        self.requests.append(path)
        if path == "/api/v2/signingCert":
            claims = jwt.decode(auth.removeprefix("Bearer "), options={"verify_signature": False})
            csr = x509.load_pem_x509_csr(base64.b64decode(body["certificateSigningRequest"]))
            cert = self.instance.issue(csr.public_key(), claims["sub"], claims["iss"])
            pem = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (cert, self.instance.ca_cert)]
            return 201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": pem}}}
        if path == "/api/v1/log/entries":
            return 201, self.instance.log_entry_response(FakeRekor(self.instance).proposed_body(body))
        return 404, {"code": 404, "message": f"no route {path}"}

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
