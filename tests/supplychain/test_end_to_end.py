"""End to end as a user runs it: lock -> fetch -> verify -> build (twice) -> SBOM -> sign ->
`kubevirt-build verify`, against real RPMs in a loopback repository and a throw-away sigstore
instance verified by sigstore-python's real Verifier; then tampering, each refused in one line."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sc_cli import BUILDER, IDENTITY, ISSUER, kb as _kb, kb_inprocess as _kb_inprocess
from sc_sigstore import TestInstance
from supplychain.oci import Layout
from supplychain.signing import COSIGN_SIGN_PREDICATE, CYCLONEDX_PREDICATE, apply_attach_bundle, compute_statement

def _verify(r, layout=None, identity=IDENTITY, manifest=True, trusted_root=None, offline=False):
    args = ["verify", "--layout", str(layout or r["work"] / "oci1"), "--tag", "v0.1.0",
            "--trusted-root", str(trusted_root or r["root"]), "--certificate-identity", identity,
            "--certificate-oidc-issuer", ISSUER, "--lock", str(r["lock"]), "--target", "handler",
            "--builder-id", BUILDER, "--spec", str(r["work"] / "images" / "handler.yaml")]
    if manifest:
        args += ["--release-manifest", str(r["manifest"])]
    else:
        args += ["--no-strict"]
    return _kb(*args, check=False, offline=True) if offline else _kb_inprocess(*args)


def test_two_builds_give_the_same_digest(release):
    first, second = release["digests"]
    assert first.startswith("sha256:") and first == second


def test_image_carries_files_accounts_and_file_capabilities(release):
    import io
    import struct
    import tarfile

    layout = Layout(release["work"] / "oci1")
    members = {}
    for tar_bytes in layout.read_layer_tars(layout.read_tagged("v0.1.0")):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for m in tar.getmembers():
                members[m.name] = (m, tar.extractfile(m).read() if m.isfile() else None)
    conf, data = members["etc/hello.conf"]
    assert (conf.uid, conf.gid, conf.mode, data) == (0, 107, 0o640, b"greeting = hi\n")
    assert b"qemu:x:107:107::/home/qemu:/sbin/nologin\n" in members["etc/passwd"][1]
    hello, _ = members["usr/bin/hello"]
    cap = hello.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    magic, permitted, _, _, _ = struct.unpack("<IIIII", cap)
    assert (magic, permitted) == (0x02000001, 1 << 10)  # effective; CAP_NET_BIND_SERVICE


def test_verify_passes_every_check_with_one_line_each(release):
    proc = _verify(release, offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ok layout", "ok release", "ok signature", "ok sbom",
                                                      "ok provenance", "ok policy", "verified"]
    assert f"-> {release['digests'][0]}" in lines[0]
    assert "3 rpm packages == lock target handler" in lines[3]
    assert "user 107:107" in lines[5]


def test_sbom_lists_every_locked_rpm_with_purl_and_sha256(release):
    lock = json.loads(release["lock"].read_text())
    comps = {c["name"]: c for c in release["sbom"]["components"]}
    for pkg in lock["packages"]:
        comp = comps[pkg["name"]]
        assert comp["purl"] == (f"pkg:rpm/kubevirt-py/{pkg['name']}@{pkg['evr'].rpartition(':')[2]}"
                                "?arch=x86_64&distro=kubevirt-test-1")
        assert comp["hashes"] == [{"alg": "SHA-256", "content": pkg["sha256"]}]
    assert release["sbom"]["metadata"]["component"]["version"] == release["digests"][0]
    assert "fakeshell" not in comps


def test_scanner_reads_the_same_packages_from_the_rpm_database_as_the_sbom_lists(release):
    """What Trivy/Syft read (/var/lib/rpm/rpmdb.sqlite, through rpm itself) == the SBOM == the lock."""
    import io
    import tarfile

    from supplychain.rpmdb import read_rpmdb

    layout = Layout(release["work"] / "oci1")
    data = None
    for tar_bytes in layout.read_layer_tars(layout.read_tagged("v0.1.0")):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for m in tar.getmembers():
                if m.name == "var/lib/rpm/rpmdb.sqlite":
                    data = tar.extractfile(m).read()
    installed = read_rpmdb(data)
    listed = {(c["name"], c["version"], c["purl"].split("arch=")[1].split("&")[0])
              for c in release["sbom"]["components"] if c.get("purl", "").startswith("pkg:rpm/")}
    assert installed == listed
    assert {p["name"] for p in json.loads(release["lock"].read_text())["packages"]} == {n for n, _, _ in installed}


def test_sbom_lists_every_file_with_its_hash_and_owner(release):
    import hashlib
    import io
    import tarfile

    layout = Layout(release["work"] / "oci1")
    files = {}
    for tar_bytes in layout.read_layer_tars(layout.read_tagged("v0.1.0")):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    files["/" + m.name] = hashlib.sha256(tar.extractfile(m).read()).hexdigest()
    listed = {f["name"]: (c["name"], f["hashes"][0]["content"]) for c in release["sbom"]["components"]
              for f in c.get("components", []) if "hashes" in f}
    assert {p: sha for p, (_, sha) in listed.items()} == files
    assert listed["/usr/bin/hello"][0] == "hello"
    assert listed["/etc/passwd"][0] == listed["/etc/group"][0] == listed["/etc/hello.conf"][0] == "kubevirt-build"
    assert listed["/opt/kubevirt-py/site-packages/greeting_helper.py"][0] == "greeting-helper"


def _copy_layout(release, tmp_path):
    dst = tmp_path / "oci"
    shutil.copytree(release["work"] / "oci1", dst)
    return dst


def test_changed_layer_blob_is_refused(release, tmp_path):
    dst = _copy_layout(release, tmp_path)
    layout = Layout(dst)
    layer = layout.read_json(layout.read_tagged("v0.1.0"))["layers"][0]
    path = layout.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = _verify(release, layout=dst)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == f"FAIL layout: blob {layer['digest']} content does not match its digest"


def test_wrong_signer_identity_is_refused(release):
    proc = _verify(release, identity="https://github.com/attacker/fork/.github/workflows/release.yml@refs/tags/v0.1.0",
                   manifest=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("FAIL signature: bundle sha256:")
    assert "SANs do not match" in proc.stdout.splitlines()[-1]


def test_another_sigstore_root_is_refused(release, tmp_path):
    other = TestInstance("other").apply_trusted_root(tmp_path / "other_root.json")
    proc = _verify(release, trusted_root=other, manifest=False)
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1].startswith("FAIL signature: bundle")


def test_signature_for_another_digest_is_refused(release, tmp_path):
    dst = _copy_layout(release, tmp_path)
    layout = Layout(dst)
    desc = layout.read_tagged("v0.1.0")
    for ref in list(layout.read_referrers(desc["digest"])):
        if ref["_descriptor"].get("annotations", {}).get("dev.sigstore.bundle.predicateType") == COSIGN_SIGN_PREDICATE:
            index = layout.read_index()
            index["manifests"] = [m for m in index["manifests"] if m["digest"] != ref["_descriptor"]["digest"]]
            layout.apply_index(index["manifests"])
    other = "sha256:" + "ab" * 32
    with release["instance"].signing_context().signer(release["token"]) as signer:
        bundle = signer.sign_dsse(compute_statement("registry.test.invalid/kubevirt-py/handler", other,
                                                    COSIGN_SIGN_PREDICATE, {}))
    apply_attach_bundle(layout, desc, bundle.to_json(), COSIGN_SIGN_PREDICATE)
    proc = _verify(release, layout=dst, manifest=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].endswith(f"is for {other}, not the image {desc['digest']}")


def test_sbom_that_does_not_match_the_image_is_refused(release, tmp_path):
    dst = _copy_layout(release, tmp_path)
    layout = Layout(dst)
    desc = layout.read_tagged("v0.1.0")
    for ref in list(layout.read_referrers(desc["digest"])):
        if ref["_descriptor"].get("annotations", {}).get("dev.sigstore.bundle.predicateType") == CYCLONEDX_PREDICATE:
            index = layout.read_index()
            layout.apply_index([m for m in index["manifests"] if m["digest"] != ref["_descriptor"]["digest"]])
    sbom = json.loads(json.dumps(release["sbom"]))
    sbom["components"] = [c for c in sbom["components"] if c["name"] != "libgreet"]
    with release["instance"].signing_context().signer(release["token"]) as signer:
        bundle = signer.sign_dsse(compute_statement("registry.test.invalid/kubevirt-py/handler", desc["digest"],
                                                    CYCLONEDX_PREDICATE, sbom))
    apply_attach_bundle(layout, desc, bundle.to_json(), CYCLONEDX_PREDICATE)
    proc = _verify(release, layout=dst, manifest=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == ("FAIL sbom: package set differs from lock target handler: "
                                            "not in the SBOM ['libgreet']")


def test_moved_tag_is_caught_by_the_signed_release_manifest(release, tmp_path):
    from supplychain.layer import FILE, LayerEntry, compute_layer
    from supplychain.oci import ImageConfig

    dst = _copy_layout(release, tmp_path)
    layout = Layout(dst)
    signed = layout.read_tagged("v0.1.0")["digest"]
    # a well-formed image of the attacker's, tagged v0.1.0 in place of the signed one
    layer = compute_layer([LayerEntry("usr/bin/hello", FILE, 0o755, data=b"evil\n")], 1_700_000_000, "evil")
    evil = layout.apply_image(ImageConfig(user="107:107", entrypoint=["/usr/bin/hello"], env={},
                                          created=1_700_000_000), [layer], {})
    layout.apply_tag(evil, "v0.1.0")
    proc = _verify(release, layout=dst)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == (f"FAIL release: signed manifest maps v0.1.0 to ['{signed}'], "
                                            f"layout has {evil['digest']}")


def test_changed_release_manifest_fails_its_signature(release, tmp_path):
    desc_digest = release["digests"][0]
    manifest = tmp_path / "release.json"
    manifest.write_bytes(release["manifest"].read_bytes().replace(desc_digest.encode(), b"sha256:" + b"cd" * 32))
    shutil.copy(str(release["manifest"]) + ".sigstore.json", str(manifest) + ".sigstore.json")
    proc = _verify(dict(release, manifest=manifest))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("FAIL release: release.json signature does not verify")


def test_sigstores_own_cli_verifies_the_release_manifest_without_network(release, tmp_path):
    """An independent check of our bundles: sigstore's CLI, with no network at all (unshare -n)."""
    config = release["instance"].apply_client_trust_config(tmp_path / "trust_config.json")
    sigstore_cli = str(Path(sys.executable).parent / "sigstore")
    base = [sigstore_cli, "--trust-config", str(config), "verify", "identity", "--bundle",
            str(release["manifest"]) + ".sigstore.json", "--cert-identity", IDENTITY, "--cert-oidc-issuer", ISSUER]
    wrap = ["unshare", "--user", "--map-root-user", "--net"] if shutil.which("unshare") else []
    ok = subprocess.run([*wrap, *base, str(release["manifest"])], capture_output=True, text=True)
    if ok.returncode != 0 and "unshare" in ok.stderr:
        wrap = []  # user namespaces unavailable: still offline by construction (no service is contacted)
        ok = subprocess.run([*base, str(release["manifest"])], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout + ok.stderr
    tampered = tmp_path / "release.json"
    tampered.write_bytes(release["manifest"].read_bytes().replace(b"v0.1.0", b"v0.1.1"))
    bad = subprocess.run([*wrap, *base, str(tampered)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "FAIL" in bad.stdout + bad.stderr and "digest mismatch" in bad.stdout + bad.stderr


def test_image_not_matching_its_spec_user_is_refused(release, tmp_path):
    spec = yaml.safe_load((release["work"] / "images" / "handler.yaml").read_text())
    spec["runAs"] = "108:108"
    spec["accounts"]["users"][0]["uid"] = 108
    other = release["work"] / "images" / f"handler-{tmp_path.name}.yaml"
    other.write_text(yaml.safe_dump(spec))
    args = ["verify", "--layout", str(release["work"] / "oci1"), "--tag", "v0.1.0", "--trusted-root",
            str(release["root"]), "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER,
            "--lock", str(release["lock"]), "--target", "handler", "--spec", str(other), "--no-strict"]
    proc = _kb_inprocess(*args)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == (f"FAIL policy: image runs '107:107' ['/usr/bin/hello'], spec {other.name} "
                                            "declares 108:108 ['/usr/bin/hello']")


def test_sigstores_own_cli_verifies_the_cosign_shaped_image_signature(release, tmp_path):
    """The image signature is a DSSE statement about the manifest digest: sigstore's CLI checks
    it against the manifest blob itself (sha256 of the blob == the statement subject)."""
    layout = Layout(release["work"] / "oci1")
    desc = layout.read_tagged("v0.1.0")
    [ref] = [r for r in layout.read_referrers(desc["digest"])
             if r["_descriptor"].get("annotations", {}).get("dev.sigstore.bundle.predicateType") == COSIGN_SIGN_PREDICATE]
    bundle = tmp_path / "image.sigstore.json"
    bundle.write_bytes(layout.read_blob(ref["layers"][0]))
    config = release["instance"].apply_client_trust_config(tmp_path / "trust_config.json")
    base = [str(Path(sys.executable).parent / "sigstore"), "--trust-config", str(config), "verify", "identity",
            "--bundle", str(bundle), "--cert-identity", IDENTITY, "--cert-oidc-issuer", ISSUER]
    ok = subprocess.run([*base, str(layout.blob_path(desc["digest"]))], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    config_blob = layout.blob_path(layout.read_json(desc)["config"]["digest"])  # any other blob: refused
    bad = subprocess.run([*base, str(config_blob)], capture_output=True, text=True)
    assert bad.returncode != 0
