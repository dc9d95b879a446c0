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
import sys
from pathlib import Path

import click

from supplychain.errors import SupplyChainError

DEFAULT_CACHE = Path(os.environ.get("KUBEVIRT_BUILD_CACHE", Path.home() / ".cache" / "kubevirt-build"))
DEFAULT_BUILDER = "https://github.com/kubevirt-py/kubevirt-py/.github/workflows/release.yml"


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
@click.option("--builder-id", default=DEFAULT_BUILDER, show_default=True)
@click.option("--python-env", type=click.Path(path_type=Path), default=None,
              help="interpreter of the build environment to describe with cyclonedx-py")
def build(spec: Path, out: Path, tag: str, wheels: tuple[Path, ...], cache: Path, sbom_dir: Path,
          source_date_epoch: int | None, vendor: str | None, builder_id: str, python_env: Path | None) -> None:
    """Build the image, write its SBOM and provenance, attach the SBOM as a referrer."""
    from supplychain.builder import apply_build
    from supplychain.fetch import Cache
    from supplychain.provenance import compute_provenance, read_git_commit
    from supplychain.sbom import SBOM_MEDIA_TYPE, apply_python_env_sbom, compute_sbom

    epoch = _epoch(source_date_epoch)
    result = apply_build(spec, out, tag, Cache(cache), list(wheels), epoch)
    sbom_text = compute_sbom(result, vendor or ("debian" if result.kind == "deb" else "kubevirt-py"), epoch)
    sbom_dir.mkdir(parents=True, exist_ok=True)
    sbom_path = sbom_dir / f"{result.spec.name}.cdx.json"
    sbom_path.write_text(sbom_text)
    result.layout.apply_referrer(result.descriptor, SBOM_MEDIA_TYPE, sbom_text.encode(), SBOM_MEDIA_TYPE)
    if python_env is not None:
        apply_python_env_sbom(python_env, sbom_dir / f"{result.spec.name}.python-env.cdx.json")
    root = Path(__file__).resolve().parents[2]
    prov = compute_provenance(result, builder_id, "https://github.com/kubevirt-py/kubevirt-py",
                              read_git_commit(root), epoch)
    (Path(out) / f"{result.spec.name}.provenance.json").write_text(json.dumps(prov, indent=2, sort_keys=True))
    click.echo(f"{result.spec.name} {tag} {result.digest} ({len(result.packages)} {result.kind} packages, "
               f"{len(result.python)} wheels) sbom={sbom_path}")


@cli.command()
@click.option("--layout", type=click.Path(path_type=Path), required=True)
@click.option("--tag", required=True)
@click.option("--spec", type=click.Path(path_type=Path), required=True)
@click.option("--sbom", "sbom_path", type=click.Path(path_type=Path), required=True)
@click.option("--staging", is_flag=True, help="use the sigstore staging instance")
def sign(layout: Path, tag: str, spec: Path, sbom_path: Path, staging: bool) -> None:
    """Keyless signing in CI (ambient OIDC identity): image signature, SBOM and provenance
    attestations, attached as referrers."""
    from supplychain.oci import Layout
    from supplychain.signing import apply_sign_image, read_ambient_context
    from supplychain.spec import read_spec

    image = read_spec(spec)
    context, token = read_ambient_context(staging)
    prov = json.loads((Path(layout) / f"{image.name}.provenance.json").read_text())
    refs = apply_sign_image(Layout(layout), tag, image.repository, context, token,
                            json.loads(Path(sbom_path).read_text()), prov)
    click.echo(f"signed {tag} as {token.identity}: {len(refs)} bundles attached")


@cli.command("release")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--version", "version", required=True)
@click.option("--image", "images", multiple=True, required=True,
              help="NAME=LAYOUT:TAG:REPOSITORY (repeatable)")
@click.option("--sign/--no-sign", "do_sign", default=False, help="sign keylessly with the ambient CI identity")
def release(out: Path, version: str, images: tuple[str, ...], do_sign: bool) -> None:
    """Write the release manifest (tag -> digests) and optionally sign it."""
    from supplychain.oci import Layout
    from supplychain.provenance import read_git_commit
    from supplychain.signing import apply_sign_file, compute_release_manifest, read_ambient_context

    doc = {}
    for item in images:
        name, _, rest = item.partition("=")
        layout_dir, tag, repository = rest.split(":", 2)
        desc = Layout(Path(layout_dir)).read_tagged(tag)
        doc[name] = {"repository": repository, "tag": tag, "digest": desc["digest"]}
    Path(out).write_bytes(compute_release_manifest(version, read_git_commit(Path.cwd()), doc))
    if do_sign:
        context, token = read_ambient_context()
        apply_sign_file(Path(out), context, token)
    click.echo(f"release manifest {out} ({len(doc)} images)")


@cli.command()
@click.option("--layout", type=click.Path(path_type=Path), required=True)
@click.option("--tag", required=True)
@click.option("--trusted-root", type=click.Path(path_type=Path), required=True,
              help="sigstore TrustedRoot JSON (public-good: `sigstore` caches it; tests: a throw-away root)")
@click.option("--certificate-identity", required=True)
@click.option("--certificate-oidc-issuer", required=True)
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), required=True)
@click.option("--target", required=True)
@click.option("--release-manifest", type=click.Path(path_type=Path), default=None)
@click.option("--builder-id", "builder_ids", multiple=True, help="allowed provenance builder ids")
@click.option("--spec", type=click.Path(path_type=Path), default=None,
              help="image spec whose runAs and entrypoint the image must carry")
def verify(layout: Path, tag: str, trusted_root: Path, certificate_identity: str, certificate_oidc_issuer: str,
           lock_path: Path, target: str, release_manifest: Path | None, builder_ids: tuple[str, ...],
           spec: Path | None) -> None:
    """Verify an image; one line per check, exit 1 on the first failure."""
    from supplychain.verify import VerifyRequest, check_all

    req = VerifyRequest(layout, tag, trusted_root, certificate_identity, certificate_oidc_issuer, lock_path,
                        target, release_manifest, builder_ids, spec)
    try:
        for line in check_all(req):
            click.echo(line)
    except SupplyChainError as exc:
        click.echo(f"FAIL {exc}")
        sys.exit(1)
    click.echo("verified")


@cli.command("verify-tag")
@click.option("--repo", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--tag", required=True)
@click.option("--key", "keys", multiple=True, required=True, type=click.Path(path_type=Path),
              help="pinned release-signer key file (repeatable)")
@click.option("--commit", default=None, help="the commit the tag must point at (release manifest gitCommit)")
def verify_tag(repo: Path, tag: str, keys: tuple[Path, ...], commit: str | None) -> None:
    """Verify a signed git tag against pinned release-signer keys only."""
    from supplychain.gittag import check_git_tag
    from supplychain.keys import Keyring

    fpr = check_git_tag(repo, tag, Keyring(list(keys)), commit)
    click.echo(f"ok tag: {tag} signed by pinned key {fpr}")


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


if __name__ == "__main__":
    main()
