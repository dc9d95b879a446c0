"""Signing with sigstore-python: image signatures, attestations and the release manifest.

Owns what gets signed and in which shape (docs/supply-chain.md §5.4, cosign v3):
* image signature: a DSSE in-toto Statement v1 whose subject is the image manifest digest,
  predicateType https://sigstore.dev/cosign/sign/v1, empty predicate;
* SBOM attestation: predicateType https://cyclonedx.org/bom, predicate = the CycloneDX SBOM;
* provenance attestation: predicateType https://slsa.dev/provenance/v1;
* release manifest: the file bytes signed as a message signature (`release.json.sigstore.json`).
Bundles (sigstore bundle v0.3) are attached to the image as OCI referrers with artifactType
application/vnd.dev.sigstore.bundle.v0.3+json (cosign v3's layout). A signer is anything with
`identity`, `sign_dsse(statement) -> bundle JSON` and `sign_artifact(bytes) -> bundle JSON`:
sigstore keyless (`open_sigstore_signer`: a SigningContext from the public-good instance, or from
a ClientTrustConfig file naming a private instance, plus an OIDC token) or a key pair
(keysign.KeySigner). Every failure is a one-line SupplyChainError.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from sigstore.dsse import StatementBuilder, Subject
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

from supplychain.errors import SupplyChainError
from supplychain.oci import Layout

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"


def compute_statement(subject_name: str, digest: str, predicate_type: str, predicate: dict):
    """An in-toto Statement v1 about one subject ("sha256:<hex>" digest)."""
    return (StatementBuilder()
            .subjects([Subject(name=subject_name, digest={"sha256": digest.split(":", 1)[1]})])
            .predicate_type(predicate_type).predicate(predicate).build())


def apply_attach_bundle(layout: Layout, subject: dict, bundle_json: str, predicate_type: str) -> dict:
    """Store a DSSE bundle as a referrer of `subject` (cosign v3 annotations)."""
    return layout.apply_referrer(subject, BUNDLE_TYPE, bundle_json.encode(), BUNDLE_TYPE,
                                 {"dev.sigstore.bundle.content": "dsse-envelope",
                                  "dev.sigstore.bundle.predicateType": predicate_type})


class BundleSigner(Protocol):
    """What signs: `identity` (certificate SAN or "key:<id>") and two bundle makers."""

    identity: str

    def sign_dsse(self, statement) -> str:
        """A sigstore bundle (JSON text) with a DSSE envelope over the in-toto statement."""

    def sign_artifact(self, data: bytes) -> str:
        """A sigstore bundle (JSON text) with a message signature over `data`."""


class _SigstoreSigner:
    def __init__(self, signer, identity: str):
        self._signer, self.identity = signer, identity

    def sign_dsse(self, statement) -> str:
        try:
            return self._signer.sign_dsse(statement).to_json()
        except Exception as exc:
            raise _signing_error(exc) from None

    def sign_artifact(self, data: bytes) -> str:
        try:
            return self._signer.sign_artifact(data).to_json()
        except Exception as exc:
            raise _signing_error(exc) from None


def _signing_error(exc: BaseException) -> SupplyChainError:
    return SupplyChainError(f"sigstore signing failed: {type(exc).__name__}: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":  # pydantic: first error, no URLs
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "document"
            return f"{where}: {first.get('msg', 'invalid')}"[:300]
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text += f" ({str(cause).strip()})"
    return " ".join(text.split())[:300]


@contextmanager
def open_sigstore_signer(context: SigningContext, token: IdentityToken) -> Iterator[BundleSigner]:
    """Keyless signing session (one Fulcio certificate for every signature); sigstore's errors
    (Fulcio or Rekor unreachable or refusing, expired token) become one SupplyChainError line."""
    from sigstore.sign import Signer

    try:  # the Signer asks Fulcio for its certificate as it starts
        signer = Signer(token, context, True)
    except Exception as exc:
        raise _signing_error(exc) from None
    yield _SigstoreSigner(signer, token.identity)


def check_attestation_subjects(digest: str, tag: str, sbom: dict | None, provenance: dict | None,
                               name: str | None = None) -> None:
    """The SBOM and provenance must describe the image being signed or verified: the SBOM's
    `metadata.component.version` is `digest`; the provenance's `externalParameters.tag` is `tag`,
    its `runDetails.metadata.invocationId` is "<image name>@<digest>" (and the image name is
    `name` when given). SupplyChainError naming the first mismatch (a stale `sbom/<name>.cdx.json`
    or `<layout>/<name>.provenance.json` of another build, another image's SBOM)."""
    if sbom is not None:
        described = sbom.get("metadata", {}).get("component", {})
        if described.get("version") != digest or (name is not None and described.get("name") != name):
            raise SupplyChainError(f"SBOM describes {described.get('name')}@{described.get('version')}, "
                                   f"not the image {tag} {digest}")
    if provenance is not None:
        params = provenance.get("buildDefinition", {}).get("externalParameters", {})
        invocation = provenance.get("runDetails", {}).get("metadata", {}).get("invocationId", "")
        if str(invocation).rpartition("@")[2] != digest:
            raise SupplyChainError(f"provenance is for {invocation or 'no image'}, not the image {tag} {digest}")
        if name is not None and params.get("image") != name:
            raise SupplyChainError(f"provenance is for image {params.get('image')!r}, not {name!r}")
        if params.get("tag") != tag:
            raise SupplyChainError(f"provenance names tag {params.get('tag')!r}, not {tag!r} ({digest})")


def apply_sign_image(layout: Layout, tag: str, repository: str, signer: BundleSigner,
                     sbom: dict | None, provenance: dict | None, name: str | None = None) -> list[dict]:
    """Sign the image tagged `tag`: the cosign-shaped signature, plus the SBOM and provenance
    attestations when given; attach every bundle as a referrer. Returns referrer descriptors.
    Refuses (check_attestation_subjects) an SBOM or provenance of another image or tag."""
    desc = layout.read_tagged(tag)
    check_attestation_subjects(desc["digest"], tag, sbom, provenance, name)
    statements = [(COSIGN_SIGN_PREDICATE, {})]
    if sbom is not None:
        statements.append((CYCLONEDX_PREDICATE, sbom))
    if provenance is not None:
        statements.append((SLSA_PREDICATE, provenance))
    out = []
    for predicate_type, predicate in statements:
        bundle = signer.sign_dsse(compute_statement(repository, desc["digest"], predicate_type, predicate))
        out.append(apply_attach_bundle(layout, desc, bundle, predicate_type))
    return out


def compute_release_manifest(version: str, git_commit: str, images: dict[str, dict]) -> bytes:
    """release.json: {"version", "gitCommit", "images": {name: {"repository", "tag", "digest",
    "sbomDigest"}}} as canonical JSON bytes (what the release signature covers)."""
    doc = {"version": version, "gitCommit": git_commit, "images": images}
    return json.dumps(doc, sort_keys=True, indent=2).encode() + b"\n"


def apply_sign_file(path: Path, signer: BundleSigner) -> Path:
    """Sign a file's bytes (message signature); writes and returns `<path>.sigstore.json`."""
    path = Path(path)
    out = path.with_name(path.name + ".sigstore.json")
    out.write_text(signer.sign_artifact(path.read_bytes()))
    return out


def read_identity_token(token_file: Path | None) -> IdentityToken:
    """The OIDC token: from `token_file`, else $SIGSTORE_ID_TOKEN, else the ambient CI credential
    (GitHub Actions with `permissions: id-token: write`). One-line SupplyChainError if none."""
    import os

    from sigstore.oidc import detect_credential

    raw: str | None
    if token_file is not None:
        try:
            raw = Path(token_file).read_text().strip()
        except OSError as exc:
            raise SupplyChainError(f"identity token {token_file}: {exc.strerror}") from None
    else:
        raw = os.environ.get("SIGSTORE_ID_TOKEN")
        if not raw:
            try:
                raw = detect_credential("sigstore")
            except Exception as exc:
                raise SupplyChainError(f"ambient OIDC credential: {_one_line(exc)}") from None
    if not raw:
        raise SupplyChainError("no OIDC identity token (give --identity-token FILE, set SIGSTORE_ID_TOKEN, "
                               "run in CI with id-token: write, or sign with --key)")
    try:
        return IdentityToken(raw)
    except Exception as exc:
        raise SupplyChainError(f"identity token is not usable: {_one_line(exc)}") from None


def read_signing_context(trust_config: Path | None, staging: bool = False) -> SigningContext:
    """SigningContext from a ClientTrustConfig file (trusted root + signing config of a private
    sigstore instance: its Fulcio/Rekor URLs) or, without one, the public-good (staging)
    instance through TUF, which needs network. One-line SupplyChainError on any failure."""
    from sigstore.models import ClientTrustConfig

    try:
        if trust_config is not None:
            trust = ClientTrustConfig.from_json(Path(trust_config).read_text())
        else:
            trust = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        return SigningContext.from_trust_config(trust)
    except OSError as exc:
        raise SupplyChainError(f"trust config {trust_config}: {exc.strerror}") from None
    except Exception as exc:
        if trust_config is not None:
            raise SupplyChainError(f"trust config {trust_config}: not a ClientTrustConfig: {_one_line(exc)}") from None
        raise SupplyChainError("public-good sigstore trust root (TUF, needs network): "
                               f"{type(exc).__name__}: {_one_line(exc)}; offline, give --trust-config FILE or "
                               "--key FILE") from None


@contextmanager
def open_signer(key: Path | None, trust_config: Path | None, token_file: Path | None,
                staging: bool = False) -> Iterator[BundleSigner]:
    """The signer the command line asks for: `key` (key pair) or keyless sigstore against
    `trust_config` (or the public-good instance)."""
    if key is not None:
        from supplychain.keysign import KeySigner, read_private_key

        yield KeySigner(read_private_key(key))
        return
    token = read_identity_token(token_file)
    context = read_signing_context(trust_config, staging)
    with open_sigstore_signer(context, token) as signer:
        yield signer
