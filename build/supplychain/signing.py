"""Signing with sigstore-python: image signatures, attestations and the release manifest.

Owns what gets signed and in which shape (docs/supply-chain.md §5.4, cosign v3):
* image signature: a DSSE in-toto Statement v1 whose subject is the image manifest digest,
  predicateType https://sigstore.dev/cosign/sign/v1, empty predicate;
* SBOM attestation: predicateType https://cyclonedx.org/bom, predicate = the CycloneDX SBOM;
* provenance attestation: predicateType https://slsa.dev/provenance/v1;
* release manifest: the file bytes signed as a message signature (`release.json.sigstore.json`).
Bundles (sigstore bundle v0.3) are attached to the image as OCI referrers with artifactType
application/vnd.dev.sigstore.bundle.v0.3+json (cosign v3's layout). Signing is keyless: the
caller passes a sigstore SigningContext (production: ClientTrustConfig.production() and a CI
OIDC token; tests: a throw-away instance) and an IdentityToken.
"""
from __future__ import annotations

import json
from pathlib import Path

from sigstore.dsse import StatementBuilder, Subject
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

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


def apply_sign_image(layout: Layout, tag: str, repository: str, context: SigningContext,
                     token: IdentityToken, sbom: dict | None, provenance: dict | None) -> list[dict]:
    """Sign the image tagged `tag`: the cosign-shaped signature, plus the SBOM and provenance
    attestations when given; attach every bundle as a referrer. Returns referrer descriptors."""
    desc = layout.read_tagged(tag)
    statements = [(COSIGN_SIGN_PREDICATE, {})]
    if sbom is not None:
        statements.append((CYCLONEDX_PREDICATE, sbom))
    if provenance is not None:
        statements.append((SLSA_PREDICATE, provenance))
    out = []
    with context.signer(token) as signer:
        for predicate_type, predicate in statements:
            bundle = signer.sign_dsse(compute_statement(repository, desc["digest"], predicate_type, predicate))
            out.append(apply_attach_bundle(layout, desc, bundle.to_json(), predicate_type))
    return out


def compute_release_manifest(version: str, git_commit: str, images: dict[str, dict]) -> bytes:
    """release.json: {"version", "gitCommit", "images": {name: {"repository", "tag", "digest",
    "sbomDigest"}}} as canonical JSON bytes (what the release signature covers)."""
    doc = {"version": version, "gitCommit": git_commit, "images": images}
    return json.dumps(doc, sort_keys=True, indent=2).encode() + b"\n"


def apply_sign_file(path: Path, context: SigningContext, token: IdentityToken) -> Path:
    """Sign a file's bytes (message signature); writes and returns `<path>.sigstore.json`."""
    path = Path(path)
    with context.signer(token) as signer:
        bundle = signer.sign_artifact(path.read_bytes())
    out = path.with_name(path.name + ".sigstore.json")
    out.write_text(bundle.to_json())
    return out


def read_ambient_context(staging: bool = False) -> tuple[SigningContext, IdentityToken]:
    """Production keyless signing: the public-good (or staging) instance and the ambient CI OIDC
    token (GitHub Actions with `permissions: id-token: write`). Needs network; not used in tests."""
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import detect_credential

    trust = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    raw = detect_credential("sigstore")
    if raw is None:
        from supplychain.errors import SupplyChainError
        raise SupplyChainError("no ambient OIDC credential (run in CI with id-token: write)")
    return SigningContext.from_trust_config(trust), IdentityToken(raw)
