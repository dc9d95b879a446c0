"""Signing with no network: key pairs (cosign's --key mode) and a private sigstore instance
given as files; every failure of `sign` is one line on stderr, never a traceback."""
import json
import shutil

import pytest

from sc_cli import BUILDER, EPOCH, kb, kb_inprocess
from supplychain.oci import Layout
from supplychain.signing import BUNDLE_TYPE

PASSWORD = {"KUBEVIRT_BUILD_KEY_PASSWORD": "test-only-password"}


@pytest.fixture(scope="module")
def keyed(release, tmp_path_factory):
    """The second (unsigned) build of the release, signed with a fresh key pair: image, SBOM,
    provenance and the release manifest, all by `kubevirt-build` with no network at all."""
    work = tmp_path_factory.mktemp("keyed")
    layout = work / "oci"
    shutil.copytree(release["work"] / "oci2", layout)
    kb("generate-key-pair", "--out", str(work / "signer"), env=PASSWORD, offline=True)
    kb("generate-key-pair", "--out", str(work / "other"), env=PASSWORD, offline=True)
    spec = release["work"] / "images" / "handler.yaml"
    signed = kb("sign", "--layout", str(layout), "--tag", "v0.1.0", "--spec", str(spec),
                "--sbom", str(release["work"] / "sbom" / "handler.cdx.json"), "--key", str(work / "signer.key"),
                env=PASSWORD, offline=True)
    manifest = work / "release.json"
    kb("release-manifest", "--out", str(manifest), "--version", "v0.1.0", "--sign", "--key", str(work / "signer.key"),
       "--image", f"handler={layout}:v0.1.0:registry.test.invalid/kubevirt-py/handler", env=PASSWORD,
       offline=True)
    return {"work": work, "layout": layout, "manifest": manifest, "spec": spec, "signed": signed.stdout,
            "lock": release["lock"]}


def _verify_key(k, pub, manifest=None):
    return kb_inprocess("verify", "--layout", str(k["layout"]), "--tag", "v0.1.0", "--key", str(pub),
                        "--lock", str(k["lock"]), "--target", "handler", "--builder-id", BUILDER,
                        "--spec", str(k["spec"]), "--release-manifest", str(manifest or k["manifest"]))


def test_key_pair_files_are_encrypted_pkcs8_and_pem_public_key(keyed):
    assert (keyed["work"] / "signer.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (keyed["work"] / "signer.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (keyed["work"] / "signer.key").stat().st_mode & 0o077 == 0


def test_key_signed_image_and_release_verify_offline(keyed):
    assert "3 bundles attached" in keyed["signed"] and "as key:" in keyed["signed"]
    proc = kb("verify", "--layout", str(keyed["layout"]), "--tag", "v0.1.0", "--key", str(keyed["work"] / "signer.pub"),
              "--lock", str(keyed["lock"]), "--target", "handler", "--builder-id", BUILDER, "--spec",
              str(keyed["spec"]), "--release-manifest", str(keyed["manifest"]), check=False, offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == [
        "ok layout", "ok release", "ok signature", "ok sbom", "ok provenance", "ok policy", "verified"]


def test_key_bundles_have_the_sigstore_bundle_shape_with_a_key_hint(keyed):
    from supplychain.keysign import compute_key_id, read_public_key

    layout = Layout(keyed["layout"])
    digest = layout.read_tagged("v0.1.0")["digest"]
    refs = layout.read_referrers(digest, BUNDLE_TYPE)
    key_id = compute_key_id(read_public_key(keyed["work"] / "signer.pub"))
    for ref in refs:
        bundle = json.loads(layout.read_blob(ref["layers"][0]))
        assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert bundle["verificationMaterial"] == {"publicKey": {"hint": key_id}, "tlogEntries": []}
        assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert len(refs) == 3


def test_signatures_by_another_key_are_refused(keyed):
    proc = _verify_key(keyed, keyed["work"] / "other.pub")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("FAIL release: release.json signature does not verify: "
                                                   "bundle signed by key ")
    assert proc.stdout.splitlines()[-1].endswith("not a pinned key")


def test_changed_release_manifest_fails_the_key_signature(keyed, tmp_path):
    manifest = tmp_path / "release.json"
    manifest.write_bytes(keyed["manifest"].read_bytes().replace(b"v0.1.0", b"v0.1.1", 1))
    shutil.copy(str(keyed["manifest"]) + ".sigstore.json", str(manifest) + ".sigstore.json")
    proc = _verify_key(keyed, keyed["work"] / "signer.pub", manifest)
    assert proc.stdout.splitlines()[-1] == ("FAIL release: release.json signature does not verify: "
                                            "bundle digest does not match the artifact")


def test_keyless_signing_used_the_private_instance_on_loopback(release, sigstore_server):
    assert "/api/v2/signingCert" in sigstore_server.requests
    assert sigstore_server.requests.count("/api/v1/log/entries") >= 4  # 3 image bundles + the release manifest


def _sign_args(release, *extra):
    return ["sign", "--layout", str(release["work"] / "oci2"), "--tag", "v0.1.0",
            "--spec", str(release["work"] / "images" / "handler.yaml"),
            "--sbom", str(release["work"] / "sbom" / "handler.cdx.json"), *extra]


@pytest.mark.parametrize("case,extra,env,expected", [
    pytest.param("no-network-public-good", [], {"SIGSTORE_ID_TOKEN": "x"}, "identity token is not usable",
                 id="bad-token"),
    pytest.param("no-token", [], {}, "no OIDC identity token", id="no-token"),
    pytest.param("tuf", ["--identity-token", "{token}"], {"HOME": "{tmp}"},
                 "public-good sigstore trust root (TUF, needs network)", id="public-good-offline"),
    pytest.param("missing-key", ["--key", "{tmp}/absent.key"], {}, "signing key {tmp}/absent.key: No such file",
                 id="missing-key"),
    pytest.param("wrong-password", ["--key", "{keys}/signer.key"], {"KUBEVIRT_BUILD_KEY_PASSWORD": "wrong"},
                 "cannot load", id="wrong-password"),
    pytest.param("no-password", ["--key", "{keys}/signer.key"], {}, "is encrypted: set KUBEVIRT_BUILD_KEY_PASSWORD",
                 id="no-password"),
    pytest.param("missing-config", ["--trust-config", "{tmp}/absent.json", "--identity-token", "{token}"], {},
                 "trust config {tmp}/absent.json: No such file", id="missing-trust-config"),
    pytest.param("bad-config", ["--trust-config", "{tmp}/bad.json", "--identity-token", "{token}"], {},
                 "trust config {tmp}/bad.json: ", id="malformed-trust-config"),
    pytest.param("down", ["--trust-config", "{tmp}/down.json", "--identity-token", "{token}"], {},
                 "sigstore signing failed: ", id="private-instance-unreachable"),
])
def test_sign_failures_are_one_line(release, keyed, tmp_path, case, extra, env, expected):
    (tmp_path / "bad.json").write_text('{"mediaType": "nonsense"}')
    release["instance"].apply_client_trust_config(tmp_path / "down.json", "http://127.0.0.1:9")
    subst = {"{tmp}": str(tmp_path), "{keys}": str(keyed["work"]), "{token}": str(release["work"] / "token")}

    def fill(text):
        for k, v in subst.items():
            text = text.replace(k, v)
        return text

    shutil.copytree(release["work"] / "oci2", tmp_path / "oci")
    args = [fill(a) for a in _sign_args(release, *extra)]
    args[2] = str(tmp_path / "oci")
    proc = kb(*args, env={k: fill(v) for k, v in env.items()}, check=False, offline=True)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubevirt-build: "), proc.stderr
    assert fill(expected) in lines[0]
    assert EPOCH  # the environment kb gives every run


def test_generate_key_pair_refuses_an_unencrypted_key_unless_asked(tmp_path):
    proc = kb("generate-key-pair", "--out", str(tmp_path / "plain"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["kubevirt-build: KUBEVIRT_BUILD_KEY_PASSWORD is not set: the private key "
                                        "would be written unencrypted (set it, or pass --no-password to accept "
                                        "an unencrypted key)"]
    assert not (tmp_path / "plain.key").exists() and not (tmp_path / "plain.pub").exists()
    proc = kb("generate-key-pair", "--out", str(tmp_path / "plain"), "--no-password")
    assert (tmp_path / "plain.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
