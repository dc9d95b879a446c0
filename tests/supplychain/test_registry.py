"""Signatures that travel: push the signed image to a real registry on loopback (Debian's
docker-registry, which has no Referrers API, so the referrers tag schema carries them), pull it
into a fresh layout, and verify the pulled copy offline."""
import json
import subprocess

import pytest

from sc_cli import BUILDER, IDENTITY, ISSUER, kb
from supplychain.oci import Layout
from supplychain.registry import Registry, compute_fallback_tag, compute_reference


@pytest.fixture(scope="module")
def pulled(release, registry, tmp_path_factory):
    work = tmp_path_factory.mktemp("pulled")
    dest = f"{registry}/kubevirt-py/handler"
    pushed = kb("push", "--layout", str(release["work"] / "oci1"), "--tag", "v0.1.0", "--to", dest)
    fresh = work / "oci"
    got = kb("pull", "--from", f"{dest}:v0.1.0", "--layout", str(fresh), "--tag", "v0.1.0")
    return {"dest": dest, "layout": fresh, "pushed": pushed.stdout, "pulled": got.stdout, "work": work}


def test_push_keeps_the_digest_and_every_referrer(release, registry, pulled):
    digest = release["digests"][0]
    assert pulled["pushed"].strip() == f"pushed {pulled['dest']} {digest} with 4 referrers"
    assert pulled["pulled"].startswith(f"pulled {pulled['dest']}:v0.1.0 {digest} with 4 referrers")
    host, repo, _ = compute_reference(pulled["dest"])
    refs = Registry(host).read_referrers(repo, digest)
    kinds = sorted(r.get("annotations", {}).get("dev.sigstore.bundle.predicateType", r["artifactType"]) for r in refs)
    assert kinds == ["application/vnd.cyclonedx+json", "https://cyclonedx.org/bom", "https://sigstore.dev/cosign/sign/v1",
                     "https://slsa.dev/provenance/v1"]
    assert Registry(host).read_manifest(repo, compute_fallback_tag(digest)) is not None


def test_skopeo_sees_the_same_digest_in_the_registry(release, pulled):
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{pulled['dest']}:v0.1.0"],
                          capture_output=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    import hashlib
    assert "sha256:" + hashlib.sha256(proc.stdout).hexdigest() == release["digests"][0]


def test_pulled_image_verifies_offline(release, pulled):
    assert Layout(pulled["layout"]).read_tagged("v0.1.0")["digest"] == release["digests"][0]
    proc = kb("verify", "--layout", str(pulled["layout"]), "--tag", "v0.1.0", "--trusted-root", str(release["root"]),
              "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--lock", str(release["lock"]),
              "--target", "handler", "--builder-id", BUILDER, "--spec", str(release["work"] / "images" / "handler.yaml"),
              "--release-manifest", str(release["manifest"]), "--rebuild", "--cache", str(release["work"] / "cache1"),
              "--wheel", str(release["work"] / "greeting_helper-1.0-py3-none-any.whl"), check=False, offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "verified"


def test_a_referrer_swapped_in_the_registry_fails_verify_after_pull(release, registry, tmp_path):
    """The registry is untrusted: whatever it serves is checked after the pull."""
    from supplychain.signing import COSIGN_SIGN_PREDICATE, apply_attach_bundle, compute_statement, open_sigstore_signer
    from sc_sigstore import identity_token

    src = tmp_path / "src"
    import shutil
    shutil.copytree(release["work"] / "oci1", src)
    layout = Layout(src)
    desc = layout.read_tagged("v0.1.0")
    with open_sigstore_signer(release["instance"].signing_context(), identity_token(IDENTITY, ISSUER)) as signer:
        bundle = signer.sign_dsse(compute_statement("r", "sha256:" + "ab" * 32, COSIGN_SIGN_PREDICATE, {}))
    apply_attach_bundle(layout, desc, bundle, COSIGN_SIGN_PREDICATE)
    dest = f"{registry}/kubevirt-py/tampered"
    kb("push", "--layout", str(src), "--tag", "v0.1.0", "--to", dest)
    kb("pull", "--from", f"{dest}@{desc['digest']}", "--layout", str(tmp_path / "back"), "--tag", "v0.1.0")
    proc = kb("verify", "--layout", str(tmp_path / "back"), "--tag", "v0.1.0", "--trusted-root", str(release["root"]),
              "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--lock", str(release["lock"]),
              "--target", "handler", "--builder-id", BUILDER, "--spec", str(release["work"] / "images" / "handler.yaml"),
              "--release-manifest", str(release["manifest"]), check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].endswith(f"is for sha256:{'ab' * 32}, not the image {desc['digest']}")
    assert json.loads((tmp_path / "back" / "index.json").read_text())["manifests"]


def test_pull_of_a_missing_image_fails_in_one_line(registry, tmp_path):
    proc = kb("pull", "--from", f"{registry}/kubevirt-py/absent:v9", "--layout", str(tmp_path / "x"), "--tag", "v9",
              check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"kubevirt-build: registry {registry}: kubevirt-py/absent:v9 not found"
