"""`kubevirt-build`: the command line of the supply-chain tool (click).

Owns argument parsing and the one-line error contract: every refusal prints
"kubevirt-build: <one line>" to stderr and exits 1; `verify` prints one "ok ..." line per check
and a final "FAIL <check>: <reason>" line when a check fails.

    kubevirt-build lock    --config build/repos/debian-bookworm.yaml --out build/locks/debian-bookworm.lock.json
    kubevirt-build build   --spec build/images/control-plane.yaml --out out/oci --tag v0.1.0 --wheel dist/*.whl
    kubevirt-build sign    --layout out/oci --tag v0.1.0 --spec build/images/control-plane.yaml   # CI, keyless
    kubevirt-build release --out out/release.json --version v0.1.0 --layout out/oci --tag v0.1.0 ...
    kubevirt-build verify  --layout out/oci --tag v0.1.0 --trusted-root trusted_root.json \\
        --certificate-identity <SAN> --certificate-oidc-issuer <issuer> --lock <lock> --target <target>
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import click

from supplychain.errors import SupplyChainError

DEFAULT_CACHE = Path(os.environ.get("KUBEVIRT_BUILD_CACHE", Path.home() / ".cache" / "kubevirt-build"))
# a build on this machine names this machine; only the release workflow claims to be the workflow
# (it passes --builder-id https://github.com/<repo>/.github/workflows/release.yml itself)
DEFAULT_BUILDER = f"local:{socket.gethostname()}"
ROOT = Path(__file__).resolve().parents[2]
RELEASE_SIGNERS = ROOT / "build" / "keys" / "release-signers.asc"


def _epoch(value: int | None) -> int:
    if value is not None:
        return value
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None:
        raise SupplyChainError("SOURCE_DATE_EPOCH is not set (e.g. export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct))")
    return int(env)


@click.group()
def cli() -> None:
    """Lock, build, sign and verify kubevirt-py images."""


@cli.command()
@click.option("--config", "config", type=click.Path(path_type=Path), required=True, help="repository config YAML")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="lock file to write")
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
def lock(config: Path, out: Path, cache: Path) -> None:
    """Resolve every target, download and verify every package, write the lock."""
    from supplychain.fetch import Cache
    from supplychain.lockfile import apply_lock

    doc = apply_lock(config, out, Cache(cache))
    click.echo(f"locked {len(doc['packages'])} packages in {len(doc['targets'])} targets -> {out}")


@cli.command("python-lock")
@click.option("--pyproject", type=click.Path(path_type=Path), default=Path("pyproject.toml"), show_default=True)
@click.option("--exclude", multiple=True, help="dependency not installed from PyPI (repeatable)")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def python_lock(pyproject: Path, exclude: tuple[str, ...], out: Path) -> None:
    """Pin the runtime dependencies as wheels with sha256 hashes (needs PyPI)."""
    from supplychain.pylock import apply_python_lock

    entries = apply_python_lock(pyproject, list(exclude), out)
    click.echo(f"locked {len(entries)} wheels -> {out}")


@cli.command()
@click.option("--spec", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="OCI layout directory")
@click.option("--tag", required=True)
@click.option("--wheel", "wheels", multiple=True, type=click.Path(path_type=Path), help="wheel to install (repeatable)")
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--sbom-dir", type=click.Path(path_type=Path), default=Path("sbom"), show_default=True)
@click.option("--source-date-epoch", type=int, default=None, help="default: $SOURCE_DATE_EPOCH")
@click.option("--vendor", default=None, help="purl namespace of the packages (default: debian / the rpm config name)")
@click.option("--builder-id", default=DEFAULT_BUILDER, show_default="local:<hostname>",
              help="provenance builder id; CI passes its workflow's URL")
@click.option("--python-env", type=click.Path(path_type=Path), default=None,
              help="interpreter of the build environment to describe with cyclonedx-py")
@click.option("--source", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="git checkout the wheels are built from (its HEAD is the provenance gitCommit)")
def build(spec: Path, out: Path, tag: str, wheels: tuple[Path, ...], cache: Path, sbom_dir: Path,
          source_date_epoch: int | None, vendor: str | None, builder_id: str, python_env: Path | None,
          source: Path) -> None:
    """Build the image, write its SBOM and provenance, attach the SBOM as a referrer."""
    from supplychain.fetch import Cache
    from supplychain.release import apply_build_outputs
    from supplychain.sbom import apply_python_env_sbom

    epoch = _epoch(source_date_epoch)
    built = apply_build_outputs(spec, out, tag, Cache(cache), list(wheels), epoch, sbom_dir, vendor, builder_id,
                                Path(source))
    result = built.result
    if built.local_changes:
        click.echo(f"kubevirt-build: warning: {source} has local changes; the provenance marks them", err=True)
    if python_env is not None:
        apply_python_env_sbom(python_env, sbom_dir / f"{result.spec.name}.python-env.cdx.json")
    click.echo(f"{result.spec.name} {tag} {result.digest} ({len(result.packages)} {result.kind} packages, "
               f"{len(result.python)} wheels) sbom={built.sbom_path}")


def _signer_options(fn):
    """--key / --trust-config / --identity-token / --staging, shared by sign and release."""
    fn = click.option("--staging", is_flag=True, help="keyless: the sigstore staging instance")(fn)
    fn = click.option("--identity-token", "token_file", type=click.Path(path_type=Path), default=None,
                      help="keyless: file holding the OIDC token (default: $SIGSTORE_ID_TOKEN or the CI's)")(fn)
    fn = click.option("--trust-config", type=click.Path(path_type=Path), default=None,
                      help="keyless against a private sigstore: ClientTrustConfig JSON (trusted root + "
                           "Fulcio/Rekor URLs); default: the public-good instance (network)")(fn)
    fn = click.option("--key", "key", type=click.Path(path_type=Path), default=None,
                      help="sign with this private key (generate-key-pair; password in "
                           "$KUBEVIRT_BUILD_KEY_PASSWORD) instead of keyless")(fn)
    return fn


@cli.command("generate-key-pair")
@click.option("--out", "prefix", type=click.Path(path_type=Path), required=True,
              help="writes <out>.key (PKCS#8 PEM, encrypted with $KUBEVIRT_BUILD_KEY_PASSWORD) and <out>.pub")
@click.option("--no-password", is_flag=True, help="write the private key unencrypted (refused by default)")
def generate_key_pair(prefix: Path, no_password: bool) -> None:
    """Make an ECDSA P-256 signing key pair (cosign's key type) for key-based signing."""
    from supplychain.keysign import apply_generate_key_pair

    key, pub = apply_generate_key_pair(prefix, no_password)
    click.echo(f"private key {key}, public key {pub}")


@cli.command()
@click.option("--layout", type=click.Path(path_type=Path), required=True)
@click.option("--tag", required=True)
@click.option("--spec", type=click.Path(path_type=Path), required=True)
@click.option("--sbom", "sbom_path", type=click.Path(path_type=Path), required=True)
@_signer_options
def sign(layout: Path, tag: str, spec: Path, sbom_path: Path, key: Path | None, trust_config: Path | None,
         token_file: Path | None, staging: bool) -> None:
    """Sign the image (cosign-shaped signature) and attest its SBOM and provenance; the bundles
    are attached as referrers. Keyless (sigstore) or with --key."""
    from supplychain.oci import Layout
    from supplychain.signing import apply_sign_image, check_attestation_subjects, open_signer
    from supplychain.spec import read_spec

    image = read_spec(spec)
    prov = _read_json(Path(layout) / f"{image.name}.provenance.json", "provenance")
    sbom = _read_json(Path(sbom_path), "SBOM")
    check_attestation_subjects(Layout(layout).read_tagged(tag)["digest"], tag, sbom, prov, image.name)
    with open_signer(key, trust_config, token_file, staging) as signer:
        refs = apply_sign_image(Layout(layout), tag, image.repository, signer, sbom, prov, image.name)
    click.echo(f"signed {tag} as {signer.identity}: {len(refs)} bundles attached")


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise SupplyChainError(f"{what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SupplyChainError(f"{what} {path}: not JSON ({exc})") from None


@cli.command("release")
@click.option("--version", "version", required=True, help="release version = git tag, e.g. v0.1.0")
@click.option("--spec", "specs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="image spec (repeatable); each image is tagged <version>-<name>")
@click.option("--out-dir", type=click.Path(path_type=Path), required=True,
              help="writes oci/ (layout), sbom/, release.json and release.json.sigstore.json")
@click.option("--wheel", "wheels", multiple=True, type=click.Path(path_type=Path), help="wheel to install (repeatable)")
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--source-date-epoch", type=int, default=None, help="default: $SOURCE_DATE_EPOCH")
@click.option("--builder-id", default=DEFAULT_BUILDER, show_default="local:<hostname>",
              help="provenance builder id; CI passes its workflow's URL")
@click.option("--repo", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="git checkout the release is made from and tagged in")
@click.option("--tag-key", default=None, help="OpenPGP key for `git tag -s -u` (default: git's user.signingkey)")
@click.option("--git-tag/--no-git-tag", default=True, show_default=True, help="create the signed git tag <version>")
@_signer_options
def release(version: str, specs: tuple[Path, ...], out_dir: Path, wheels: tuple[Path, ...], cache: Path,
            source_date_epoch: int | None, builder_id: str, repo: Path, tag_key: str | None, git_tag: bool,
            key: Path | None, trust_config: Path | None, token_file: Path | None, staging: bool) -> None:
    """Build every image, SBOM and provenance, sign them and the release manifest, and create the
    signed git tag."""
    from supplychain.fetch import Cache
    from supplychain.release import apply_release
    from supplychain.signing import open_signer

    epoch = _epoch(source_date_epoch)
    with open_signer(key, trust_config, token_file, staging) as signer:
        doc = apply_release(list(specs), version, Path(out_dir), Cache(cache), list(wheels), epoch, signer,
                            builder_id, Path(repo), tag_key, git_tag)
    for name, image in sorted(doc["images"].items()):
        click.echo(f"{name} {image['tag']} {image['digest']}")
    click.echo(f"release {version} at {doc['gitCommit']}: {out_dir}/release.json signed by {signer.identity}"
               + (f", git tag {version} signed" if git_tag else ""))


@cli.command("release-manifest")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--version", "version", required=True)
@click.option("--image", "images", multiple=True, required=True,
              help="NAME=LAYOUT:TAG:REPOSITORY (repeatable)")
@click.option("--sign/--no-sign", "do_sign", default=False, help="sign the manifest (keyless or --key)")
@_signer_options
def release_manifest(out: Path, version: str, images: tuple[str, ...], do_sign: bool, key: Path | None,
                     trust_config: Path | None, token_file: Path | None, staging: bool) -> None:
    """Write the release manifest (tag -> digests) and optionally sign it."""
    from supplychain.oci import Layout
    from supplychain.sourcetree import read_git_commit
    from supplychain.signing import apply_sign_file, compute_release_manifest, open_signer

    doc = {}
    for item in images:
        name, _, rest = item.partition("=")
        parts = rest.split(":", 2)
        if not name or len(parts) != 3 or not all(parts):
            raise SupplyChainError(f"--image {item}: expected NAME=LAYOUT:TAG:REPOSITORY")
        layout_dir, tag, repository = parts
        desc = Layout(Path(layout_dir)).read_tagged(tag)
        doc[name] = {"repository": repository, "tag": tag, "digest": desc["digest"]}
    Path(out).write_bytes(compute_release_manifest(version, read_git_commit(Path.cwd()), doc))
    if do_sign:
        with open_signer(key, trust_config, token_file, staging) as signer:
            apply_sign_file(Path(out), signer)
    click.echo(f"release manifest {out} ({len(doc)} images)")


@cli.command("kustomize-images")
@click.option("--release-manifest", type=click.Path(path_type=Path), required=True, help="release.json")
@click.option("--third-party", type=click.Path(path_type=Path), required=True,
              help="YAML list of images not built here (name, digest, source)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="kustomize Component to write")
def kustomize_images(release_manifest: Path, third_party: Path, out: Path) -> None:
    """Write the kustomize images block (every image by digest) for deploy/kubernetes."""
    from supplychain.kustomize_images import apply_kustomize_images

    doc = apply_kustomize_images(release_manifest, third_party, out)
    click.echo(f"{out}: {len(doc['images'])} images by digest")


@cli.command()
@click.option("--layout", type=click.Path(path_type=Path), required=True)
@click.option("--tag", required=True)
@click.option("--trusted-root", type=click.Path(path_type=Path), default=None,
              help="sigstore TrustedRoot JSON (public-good: `sigstore` caches it; tests: a throw-away root)")
@click.option("--certificate-identity", default=None)
@click.option("--certificate-oidc-issuer", default=None)
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path),
              help="pinned public key of key-based signatures (repeatable) instead of a trusted root")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), required=True)
@click.option("--target", required=True)
@click.option("--release-manifest", type=click.Path(path_type=Path), default=None)
@click.option("--builder-id", "builder_ids", multiple=True, help="allowed provenance builder ids")
@click.option("--spec", type=click.Path(path_type=Path), default=None,
              help="image spec whose runAs and entrypoint the image must carry")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="require --release-manifest, --spec and --builder-id")
@click.option("--rebuild", is_flag=True, help="rebuild from lock, spec and --cache (offline once the cache is "
              "filled) and require the same digest")
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--wheel", "wheels", multiple=True, type=click.Path(path_type=Path),
              help="with --rebuild: the project wheel(s) the build used (listed in the provenance)")
def verify(layout: Path, tag: str, trusted_root: Path | None, certificate_identity: str | None,
           certificate_oidc_issuer: str | None, keys: tuple[Path, ...], lock_path: Path, target: str,
           release_manifest: Path | None, builder_ids: tuple[str, ...], spec: Path | None, strict: bool,
           rebuild: bool, cache: Path, wheels: tuple[Path, ...]) -> None:
    """Verify an image; one line per check, exit 1 on the first failure."""
    from supplychain.verify import VerifyRequest, check_all

    req = VerifyRequest(layout, tag, trusted_root, certificate_identity, certificate_oidc_issuer, lock_path,
                        target, release_manifest, builder_ids, spec, keys, strict, rebuild, cache, wheels)
    try:
        for line in check_all(req):
            click.echo(line)
    except SupplyChainError as exc:
        click.echo(f"FAIL {exc}")
        sys.exit(1)
    click.echo("verified")


@cli.command()
@click.option("--layout", type=click.Path(path_type=Path), required=True)
@click.option("--tag", required=True)
@click.option("--to", "dest", required=True, help="host/repository[:tag] (default tag: --tag)")
def push(layout: Path, tag: str, dest: str) -> None:
    """Push an image and every referrer (signatures, attestations, SBOM) by digest; tag last."""
    from supplychain.oci import Layout
    from supplychain.registry import apply_push

    digest, refs = apply_push(Layout(layout), tag, dest)
    click.echo(f"pushed {dest} {digest} with {refs} referrers")


@cli.command()
@click.option("--from", "src", required=True, help="host/repository:tag or host/repository@sha256:...")
@click.option("--layout", type=click.Path(path_type=Path), required=True, help="OCI layout to pull into")
@click.option("--tag", required=True, help="tag in the layout")
def pull(src: str, layout: Path, tag: str) -> None:
    """Pull an image and every referrer into an OCI layout (digests checked)."""
    from supplychain.oci import Layout
    from supplychain.registry import apply_pull

    digest, refs = apply_pull(src, Layout(layout), tag)
    click.echo(f"pulled {src} {digest} with {refs} referrers -> {layout}:{tag}")


@cli.command("verify-tag")
@click.option("--repo", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--tag", required=True)
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path),
              help=f"pinned release-signer key file (repeatable; default {RELEASE_SIGNERS.relative_to(ROOT)})")
@click.option("--commit", default=None, help="the commit the tag must point at (release manifest gitCommit)")
@click.option("--release-manifest", type=click.Path(path_type=Path), default=None,
              help="release.json: the tag must point at its gitCommit and its message name the file's sha256")
@click.option("--allow-test-key", is_flag=True, help="accept keys whose user id marks them as test keys")
def verify_tag(repo: Path, tag: str, keys: tuple[Path, ...], commit: str | None, release_manifest: Path | None,
               allow_test_key: bool) -> None:
    """Verify a signed git tag against pinned release-signer keys only."""
    from supplychain.gittag import check_git_tag, check_tag_names_manifest
    from supplychain.keys import Keyring

    if release_manifest is not None:
        doc = _read_json(Path(release_manifest), "release manifest")
        if commit is not None and commit != doc.get("gitCommit"):
            raise SupplyChainError(f"--commit {commit} differs from {release_manifest} gitCommit {doc.get('gitCommit')}")
        commit = doc.get("gitCommit")
    keyring = Keyring(list(keys) or [RELEASE_SIGNERS])
    fpr = check_git_tag(repo, tag, keyring, commit, allow_test_key)
    click.echo(f"ok tag: {tag} signed by pinned key {fpr} ({keyring.find(fpr).uids[0] if keyring.find(fpr).uids else '?'})")
    if commit is not None:
        click.echo(f"ok commit: {tag} points at {commit}")
    if release_manifest is not None:
        digest = check_tag_names_manifest(repo, tag, Path(release_manifest).read_bytes())
        click.echo(f"ok release manifest: tag message names {release_manifest} {digest}")


def main() -> None:
    """Console entry point: run the CLI, turning a SupplyChainError into one line and exit 1."""
    try:
        rv = cli(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except SupplyChainError as exc:
        click.echo(f"kubevirt-build: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except Exception as exc:  # the one-line contract holds for bugs and library errors too
        click.echo(f"kubevirt-build: {compute_error_line(exc)}", err=True)
        sys.exit(1)


def compute_error_line(exc: BaseException) -> str:
    """The one line for an error that is not a SupplyChainError: a layout error's own text, an
    OS error as "<file>: <reason>", anything else (a bug, a library's error) with its class
    name so it can be reported."""
    from supplychain.oci import LayoutError

    if isinstance(exc, LayoutError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


if __name__ == "__main__":
    main()
