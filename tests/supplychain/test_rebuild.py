"""`verify --rebuild`: the image rebuilt with no network from the lock, the spec and the package
cache has the signed digest; a content swap re-signed by the legitimate identity (signature,
SBOM, provenance and release manifest all valid) passes every signature check and is caught
only by the rebuild."""
import shutil

import pytest

from sc_cli import BUILDER, IDENTITY, ISSUER, kb


def _verify(release, layout, manifest, *extra):
    return kb("verify", "--layout", str(layout), "--tag", "v0.1.0", "--trusted-root", str(release["root"]),
              "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--lock", str(release["lock"]),
              "--target", "handler", "--builder-id", BUILDER, "--spec", str(release["work"] / "images" / "handler.yaml"),
              "--release-manifest", str(manifest), *extra, check=False, offline=True)


def _rebuild_args(release, cache="cache1"):
    return ["--rebuild", "--cache", str(release["work"] / cache),
            "--wheel", str(release["work"] / "greeting_helper-1.0-py3-none-any.whl")]


def test_rebuild_offline_gives_the_signed_digest(release):
    proc = _verify(release, release["work"] / "oci1", release["manifest"], *_rebuild_args(release))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == ("ok rebuild: rebuilt from lock, spec and cache with SOURCE_DATE_EPOCH 1700000000: "
                         f"same digest {release['digests'][0]}")
    assert lines[-1] == "verified"


@pytest.fixture(scope="module")
def swapped(release, tmp_path_factory):
    """The attacker's image: same lock and spec shape, /etc/hello.conf swapped, built, signed and
    put in a release manifest with the legitimate identity (as a compromised CI would)."""
    work = tmp_path_factory.mktemp("swap")
    shutil.copytree(release["work"] / "images", work / "images")
    shutil.copytree(release["work"] / "locks", work / "locks")
    shutil.copytree(release["work"] / "repos", work / "repos")
    (work / "hello.conf").write_text("greeting = pwned\n")
    signing = ["--trust-config", str(release["work"] / "trust_config.json"),
               "--identity-token", str(release["work"] / "token")]
    kb("build", "--spec", str(work / "images" / "handler.yaml"), "--out", str(work / "oci"), "--tag", "v0.1.0",
       "--cache", str(release["work"] / "cache1"), "--sbom-dir", str(work / "sbom"), "--builder-id", BUILDER,
       "--wheel", str(release["work"] / "greeting_helper-1.0-py3-none-any.whl"))
    kb("sign", "--layout", str(work / "oci"), "--tag", "v0.1.0", "--spec", str(work / "images" / "handler.yaml"),
       "--sbom", str(work / "sbom" / "handler.cdx.json"), *signing)
    kb("release-manifest", "--out", str(work / "release.json"), "--version", "v0.1.0", "--sign", *signing,
       "--image", f"handler={work / 'oci'}:v0.1.0:registry.test.invalid/kubevirt-py/handler")
    return work


def test_resigned_content_swap_passes_signatures_but_fails_the_rebuild(release, swapped):
    plain = _verify(release, swapped / "oci", swapped / "release.json")
    assert plain.returncode == 0 and plain.stdout.splitlines()[-1] == "verified", plain.stdout + plain.stderr
    proc = _verify(release, swapped / "oci", swapped / "release.json", *_rebuild_args(release))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("FAIL rebuild: rebuilt image " + release["digests"][0] + " differs from sha256:")


def test_rebuild_with_an_unlisted_wheel_is_refused(release, tmp_path):
    from sc_cli import apply_tiny_wheel

    other = apply_tiny_wheel(tmp_path / "greeting_helper-1.0-py3-none-any.whl", version="1.0")
    other.write_bytes(other.read_bytes() + b"\0")
    proc = _verify(release, release["work"] / "oci1", release["manifest"], "--rebuild", "--cache",
                   str(release["work"] / "cache1"), "--wheel", str(other))
    assert proc.stdout.splitlines()[-1].startswith("FAIL rebuild: wheel greeting_helper-1.0-py3-none-any.whl "
                                                   "(sha256 ")
    assert proc.stdout.splitlines()[-1].endswith("is not in the provenance")


def test_rebuild_with_an_empty_cache_and_no_network_fails_in_one_line(release, tmp_path):
    proc = _verify(release, release["work"] / "oci1", release["manifest"], "--rebuild", "--cache", str(tmp_path),
                   "--wheel", str(release["work"] / "greeting_helper-1.0-py3-none-any.whl"))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("FAIL rebuild: package ")
