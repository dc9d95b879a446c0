"""`kubevirt-build verify`: every check a consumer needs before running an image, failing closed.

Owns the verification pipeline (docs/supply-chain.md §9.4), one result line per check. Strict
mode (default) first requires the release manifest, the spec and the builder ids:
1. layout: every blob's digest and size, the config's diff_ids against the uncompressed layers;
2. release: the signed release manifest verifies (signer identity/issuer) and maps tag -> digest;
3. signature: cosign-shaped DSSE bundle(s) verify with sigstore's Verifier against the trusted
   root and the expected identity/issuer, and their subject is this manifest digest;
4. sbom: the CycloneDX attestation verifies the same way, validates against the 1.6 schema,
   names this image digest, its package set (name, version, arch, sha256) equals the lock's,
   its Python packages equal the distributions installed in the image, no other component
   appears, and the unsigned SBOM referrer is the attested document (sbomcheck.py);
5. provenance: the SLSA v1 attestation verifies, its builder id is allowed, and its
   resolvedDependencies contain every locked package digest and every SBOM wheel digest;
6. policy: numeric non-root user, entrypoint is an executable file, no shell/package manager;
7. rebuild (with --rebuild): the image rebuilt offline from lock, spec and cache has the same
   digest (rebuild.py).
sigstore-python's verifier does not check statement subjects; this module does.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator

from supplychain.builder import compute_resolved
from supplychain.bundleverify import read_bundle_verifier
from supplychain.errors import SupplyChainError
from supplychain.layer import DIR, FILE, HARDLINK, LayerEntry, compute_entries_from_tar, compute_normal_path
from supplychain.lockfile import compute_target_packages, read_lock
from supplychain.oci import Layout, LayoutError
from supplychain.sbom import check_sbom_schema
from supplychain.sbomcheck import (DEFAULT_PYTHON_TARGET, check_sbom_components, check_sbom_files,
                                   check_sbom_links, check_unsigned_sbom, compute_image_dists,
                                   compute_sbom_wheels)
from supplychain.signing import (BUNDLE_TYPE, COSIGN_SIGN_PREDICATE, CYCLONEDX_PREDICATE, SLSA_PREDICATE,
                                 check_attestation_subjects)
from supplychain.spec import DEFAULT_FORBIDDEN, read_spec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


@dataclasses.dataclass(frozen=True)
class VerifyRequest:
    """What to verify and against what: the layout and `tag`, the trusted root JSON file, the
    expected signer `identity` (certificate SAN) and OIDC `issuer`, the `lock` and its `target`,
    an optional signed `release_manifest` (its bundle is `<file>.sigstore.json`), the allowed
    provenance builder ids, and optionally the image `spec` whose runAs and entrypoint the
    image must carry."""

    layout: Path
    tag: str
    trusted_root: Path | None
    identity: str | None
    issuer: str | None
    lock: Path
    target: str
    release_manifest: Path | None = None
    builder_ids: tuple[str, ...] = ()
    spec: Path | None = None
    keys: tuple[Path, ...] = ()
    strict: bool = True
    rebuild: bool = False
    cache: Path | None = None
    wheels: tuple[Path, ...] = ()


def check_strict(req: VerifyRequest) -> None:
    """Strict mode (the default) needs every anchor a release has: the signed release manifest,
    the image spec and the allowed builder ids. SupplyChainError naming what is missing."""
    missing = [opt for opt, value in (("--release-manifest", req.release_manifest), ("--spec", req.spec),
                                      ("--builder-id", req.builder_ids)) if not value]
    if req.strict and missing:
        raise SupplyChainError(f"strict: missing {', '.join(missing)} (or --no-strict to skip those checks)")


def _dsse_statements(layout: Layout, digest: str, verifier) -> list[dict]:
    """Verify every sigstore bundle referring to `digest`; return their in-toto statements."""
    out = []
    for ref in layout.read_referrers(digest, BUNDLE_TYPE):
        raw = layout.read_blob(ref["layers"][0])
        try:
            payload_type, payload = verifier.verify_dsse(raw)
        except SupplyChainError as exc:
            raise SupplyChainError(f"bundle {ref['_descriptor']['digest']} does not verify: {exc}") from None
        statement = json.loads(payload)
        if payload_type != "application/vnd.in-toto+json" or statement.get("_type") != STATEMENT_TYPE:
            raise SupplyChainError(f"bundle {ref['_descriptor']['digest']} is not an in-toto Statement v1")
        subjects = [s.get("digest", {}).get("sha256") for s in statement.get("subject", [])]
        if subjects != [digest.split(":", 1)[1]]:
            raise SupplyChainError(f"bundle {ref['_descriptor']['digest']} is for sha256:{subjects[0] if subjects else '?'}, "
                                   f"not the image {digest}")
        out.append(statement)
    return out


def check_all(req: VerifyRequest) -> Iterator[str]:
    """Yield one "ok <check>: <detail>" line per passed check; raise SupplyChainError with the
    failing check's line ("<check>: <reason>") on the first failure."""
    check_strict(req)
    layout = Layout(req.layout)
    try:
        desc = layout.read_tagged(req.tag)
        lines = layout.check_image(desc)
    except (LayoutError, KeyError, ValueError, OSError) as exc:
        raise SupplyChainError(f"layout: {exc}") from None
    digest = desc["digest"]
    yield f"ok layout: {req.tag} -> {digest}, {len(lines)} blobs match digest and size, diff_ids match"
    verifier = read_bundle_verifier(req.keys, req.trusted_root, req.identity, req.issuer)
    release_tag = req.tag  # the tag the image was built and signed as: the manifest's when given

    if req.release_manifest is not None:
        data = Path(req.release_manifest).read_bytes()
        bundle_path = Path(str(req.release_manifest) + ".sigstore.json")
        try:
            verifier.verify_artifact(data, bundle_path.read_bytes())
        except OSError as exc:
            raise SupplyChainError(f"release: {bundle_path.name}: {exc.strerror}") from None
        except SupplyChainError as exc:
            raise SupplyChainError(f"release: {req.release_manifest.name} signature does not verify: {exc}") from None
        images = json.loads(data).get("images", {})
        name, release_tag = compute_release_entry(images, req.tag, digest)
        local = f" (layout tag {req.tag})" if release_tag != req.tag else ""
        yield f"ok release: signed release manifest maps {release_tag} ({name}) to {digest}{local}"

    try:
        statements = _dsse_statements(layout, digest, verifier)
    except SupplyChainError as exc:
        raise SupplyChainError(f"signature: {exc}") from None
    by_type: dict[str, list[dict]] = {}
    for st in statements:
        by_type.setdefault(st.get("predicateType"), []).append(st)
    if not by_type.get(COSIGN_SIGN_PREDICATE):
        raise SupplyChainError(f"signature: no image signature for {digest} by {verifier.identity}")
    yield f"ok signature: {digest} signed by {verifier.identity}"

    lock = read_lock(req.lock)
    locked = {(p["name"], p["evr"], p["arch"], p["sha256"]) for p in compute_target_packages(lock, req.target)}
    sboms = by_type.get(CYCLONEDX_PREDICATE, [])
    if len(sboms) != 1:
        raise SupplyChainError(f"sbom: expected one signed SBOM attestation, found {len(sboms)}")
    sbom = sboms[0]["predicate"]
    try:
        check_sbom_schema(json.dumps(sbom))
    except SupplyChainError as exc:
        raise SupplyChainError(f"sbom: {exc}") from None
    if sbom.get("metadata", {}).get("component", {}).get("version") != digest:
        raise SupplyChainError(f"sbom: describes {sbom.get('metadata', {}).get('component', {}).get('version')}, not {digest}")
    view = compute_view(layout, desc)
    spec = read_spec(req.spec) if req.spec is not None else None
    image_dists = compute_image_dists(view, spec.python_target if spec else DEFAULT_PYTHON_TARGET)
    try:
        counts = check_sbom_components(sbom, lock["kind"], locked, image_dists, req.target)
        files = check_sbom_files(sbom, view)
        links = check_sbom_links(sbom, view)
        check_unsigned_sbom(layout, digest, sbom)
    except SupplyChainError as exc:
        raise SupplyChainError(f"sbom: {exc}") from None
    yield (f"ok sbom: signed CycloneDX 1.6 SBOM valid, {counts[0]} {lock['kind']} packages == lock target "
           f"{req.target}, {counts[1]} Python packages == the image's, all {files} files with SHA-256 and "
           f"{links} symlinks with targets, "
           "unsigned SBOM referrer == attested")

    provs = by_type.get(SLSA_PREDICATE, [])
    if len(provs) != 1:
        raise SupplyChainError(f"provenance: expected one signed SLSA provenance, found {len(provs)}")
    pred = provs[0]["predicate"]
    try:
        check_attestation_subjects(digest, release_tag, None, pred)
    except SupplyChainError as exc:
        raise SupplyChainError(f"provenance: {exc}") from None
    builder = pred.get("runDetails", {}).get("builder", {}).get("id", "")
    if req.builder_ids and builder not in req.builder_ids:
        raise SupplyChainError(f"provenance: builder {builder!r} is not allowed")
    resolved = {d.get("digest", {}).get("sha256") for d in pred.get("buildDefinition", {}).get("resolvedDependencies", [])}
    missing = sorted(p[0] for p in locked if p[3] not in resolved)
    if missing:
        raise SupplyChainError(f"provenance: resolvedDependencies lack locked packages {missing}")
    wheels = compute_sbom_wheels(sbom)
    missing = sorted(name for name, sha in wheels if sha not in resolved)
    if missing:
        raise SupplyChainError(f"provenance: resolvedDependencies lack the SBOM's Python packages {missing}")
    yield (f"ok provenance: SLSA v1 by builder {builder}, all {len(locked)} locked packages and {len(wheels)} "
           "wheels in resolvedDependencies")

    yield from _check_policy(layout, desc, spec, view)
    if req.rebuild:
        if req.spec is None or req.cache is None:
            raise SupplyChainError("rebuild: needs --spec and --cache")
        from supplychain.rebuild import check_rebuild

        yield check_rebuild(digest, pred, req.spec, req.cache, req.wheels)


def compute_release_entry(images: dict[str, dict], tag: str, digest: str) -> tuple[str, str]:
    """(image name, release tag) of the signed release manifest's entry for the image `digest`
    that the layout holds under `tag`. A `tag` the manifest names must map to `digest` (a moved
    tag fails); any other `tag` is a local name chosen at pull time, and the entry is the one whose
    digest is `digest`. SupplyChainError "release: ..." when no entry matches."""
    named = {n: i for n, i in images.items() if i.get("tag") == tag}
    pool = named or images
    match = [(n, str(i.get("tag"))) for n, i in sorted(pool.items()) if i.get("digest") == digest]
    if not match:
        listed = sorted({str(i.get("digest")) for i in named.values()})
        raise SupplyChainError(f"release: signed manifest maps {tag} to {listed or 'nothing'}, layout has {digest}")
    return match[0]


def compute_view(layout: Layout, desc: dict) -> dict[str, LayerEntry]:
    """The merged file system of the image: normalized path -> entry, later layers win."""
    view: dict[str, LayerEntry] = {}
    for tar in layout.read_layer_tars(desc):
        for entry in compute_entries_from_tar(tar):
            view[compute_normal_path(entry.path)] = entry
    return view


def _check_policy(layout: Layout, desc: dict, spec, view: dict[str, LayerEntry]) -> Iterator[str]:
    manifest = layout.read_json(desc)
    config = layout.read_json(manifest["config"])["config"]
    user = config.get("User", "")
    if spec is not None:
        if user != f"{spec.run_as[0]}:{spec.run_as[1]}" or tuple(config.get("Entrypoint") or ()) != spec.entrypoint:
            raise SupplyChainError(f"policy: image runs {user!r} {config.get('Entrypoint')}, spec {spec.path.name} "
                                   f"declares {spec.run_as[0]}:{spec.run_as[1]} {list(spec.entrypoint)}")
    uid = user.split(":", 1)[0]
    if not uid.isdigit() or int(uid) == 0 or not all(p.isdigit() for p in user.split(":")):
        raise SupplyChainError(f"policy: User {user!r} is not a numeric non-root uid[:gid]")
    entrypoint = (config.get("Entrypoint") or [""])[0]
    if not entrypoint:
        raise SupplyChainError("policy: no entrypoint")
    target = compute_resolved(view, entrypoint)
    if target is None or target.kind != "file" or not target.mode & 0o111:
        raise SupplyChainError(f"policy: entrypoint {entrypoint} is not an executable file in the image")
    present = [p for p in DEFAULT_FORBIDDEN if compute_resolved(view, p) is not None]
    if present:
        raise SupplyChainError(f"policy: image contains /{present[0]} (shell or package manager)")
    try:
        check_file_modes(view)
    except SupplyChainError as exc:
        raise SupplyChainError(f"policy: {exc}") from None
    yield (f"ok policy: user {user} numeric non-root, entrypoint {entrypoint} executable, no shell or package "
           "manager, no setuid/setgid or world-writable file")


def check_file_modes(view: dict[str, LayerEntry]) -> None:
    """No setuid or setgid file (a non-root user must not gain another identity by exec: the
    reason distroless images carry none) and no file or directory writable by others (except
    sticky directories such as /tmp). SupplyChainError naming the first offending path."""
    for path, entry in sorted(view.items()):
        if entry.kind in (FILE, HARDLINK) and entry.mode & 0o6000:
            kind = "setuid" if entry.mode & 0o4000 else "setgid"
            raise SupplyChainError(f"/{path} is {kind} (mode {entry.mode:04o}, owner {entry.uid}:{entry.gid})")
        sticky_dir = entry.kind == DIR and entry.mode & 0o1000
        if entry.kind in (FILE, HARDLINK, DIR) and entry.mode & 0o002 and not sticky_dir:
            raise SupplyChainError(f"/{path} is writable by others (mode {entry.mode:04o})")
