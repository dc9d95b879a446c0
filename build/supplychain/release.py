"""`kubevirt-build release`: the whole release on one machine, in the order a verifier checks it.

Owns the release flow: build every image spec (tag `<version>-<image name>`), write its SBOM and
provenance and attach the SBOM referrer, sign each image (signature + SBOM and provenance
attestations), write the release manifest (tag -> digest for every image, the git commit) and
sign it, then create the signed annotated git tag `<version>` (git's own OpenPGP signing,
`git tag -s`, as KubeVirt releases are tagged) whose message names the release manifest's
SHA-256, so the tag, the manifest and the images bind each other.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

from supplychain.builder import BuildResult, apply_build
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.provenance import compute_provenance
from supplychain.sbom import SBOM_MEDIA_TYPE, compute_sbom
from supplychain.signing import BundleSigner, apply_sign_file, apply_sign_image, compute_release_manifest
from supplychain.sourcetree import (check_clean_tree, check_wheel_from_commit, read_git_commit,
                                    read_local_changes)
from supplychain.spec import read_spec

SOURCE_URI = "https://github.com/kubevirt-py/kubevirt-py"


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """One built image: the build result and where its SBOM and provenance were written."""

    result: BuildResult
    sbom_path: Path
    provenance_path: Path
    local_changes: bool = False


def apply_build_outputs(spec: Path, out: Path, tag: str, cache: Cache, wheels: list[Path], epoch: int,
                        sbom_dir: Path, vendor: str | None, builder_id: str, source_root: Path) -> BuiltImage:
    """Build one image and write `<sbom_dir>/<name>.cdx.json` (also attached as the unsigned SBOM
    referrer) and `<out>/<name>.provenance.json` (HEAD of the source tree `source_root`, marked
    when that tree has local changes)."""
    commit, changed = read_git_commit(source_root), bool(read_local_changes(source_root, (Path(sbom_dir),)))
    result = apply_build(spec, out, tag, cache, wheels, epoch)
    sbom_text = compute_sbom(result, vendor or ("debian" if result.kind == "deb" else "kubevirt-py"), epoch)
    sbom_dir.mkdir(parents=True, exist_ok=True)
    sbom_path = sbom_dir / f"{result.spec.name}.cdx.json"
    sbom_path.write_text(sbom_text)
    result.layout.apply_referrer(result.descriptor, SBOM_MEDIA_TYPE, sbom_text.encode(), SBOM_MEDIA_TYPE)
    prov = compute_provenance(result, builder_id, SOURCE_URI, commit, epoch, changed)
    prov_path = Path(out) / f"{result.spec.name}.provenance.json"
    prov_path.write_text(json.dumps(prov, indent=2, sort_keys=True))
    return BuiltImage(result, sbom_path, prov_path, changed)


def compute_tag_message(version: str, manifest: bytes) -> str:
    """The annotated tag's message: the version and the release manifest's SHA-256."""
    return f"kubevirt-py {version}\n\nrelease.json sha256:{hashlib.sha256(manifest).hexdigest()}\n"


def apply_signed_tag(repo: Path, version: str, commit: str, message: str, signing_key: str | None) -> None:
    """`git tag -s` (`-u signing_key` when given, else git's user.signingkey / default key) on
    `commit`; GnuPG comes from the environment (GNUPGHOME). One-line SupplyChainError if git
    refuses (tag exists, no secret key)."""
    args = ["git", "-C", str(repo), "-c", "gpg.format=openpgp", "tag", "-s"]
    if signing_key:
        args += ["-u", signing_key]
    proc = subprocess.run([*args, "-F", "-", version, commit], input=message, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[:300]
        raise SupplyChainError(f"git tag -s {version}: {detail or 'failed'}")


def apply_release(specs: list[Path], version: str, out_dir: Path, cache: Cache, wheels: list[Path], epoch: int,
                  signer: BundleSigner, builder_id: str, repo: Path, signing_key: str | None,
                  git_tag: bool = True) -> dict:
    """Build, sign and tag a release into `out_dir` (`oci/` layout, `sbom/`, `release.json` and
    its bundle). Returns the release manifest document. Refuses (SupplyChainError) a checkout
    with local changes and a wheel whose files are not the files of the commit being tagged."""
    commit = read_git_commit(repo)
    if not commit:
        raise SupplyChainError(f"{repo} is not a git checkout with a commit")
    check_clean_tree(repo)
    for wheel in wheels:
        check_wheel_from_commit(repo, commit, wheel)
    layout_dir, images = out_dir / "oci", {}
    for spec in specs:
        image = read_spec(spec)
        tag = f"{version}-{image.name}"
        built = apply_build_outputs(spec, layout_dir, tag, cache, wheels, epoch, out_dir / "sbom", None,
                                    builder_id, repo)
        apply_sign_image(built.result.layout, tag, image.repository, signer,
                         json.loads(built.sbom_path.read_text()), json.loads(built.provenance_path.read_text()),
                         image.name)
        images[image.name] = {"repository": image.repository, "tag": tag, "digest": built.result.digest}
    manifest = out_dir / "release.json"
    data = compute_release_manifest(version, commit, images)
    manifest.write_bytes(data)
    apply_sign_file(manifest, signer)
    if git_tag:
        apply_signed_tag(repo, version, commit, compute_tag_message(version, data), signing_key)
    return json.loads(data)
