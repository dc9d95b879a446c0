"""The tamper matrix: each way an attacker or an accident can change a signed release, applied to
a copy of the end-to-end release, must fail `kubevirt-build verify` (strict, the default) with
one line naming what broke. Re-signed cases use the legitimate identity of the private sigstore
instance: the signature is valid, the content is not."""
import json
import shutil

import pytest

from sc_cli import BUILDER, IDENTITY, ISSUER, kb_inprocess
from sc_sigstore import TestInstance, identity_token
from supplychain.layer import DIR, FILE, SYMLINK, LayerEntry, compute_layer
from supplychain.oci import ImageConfig, Layout, compute_json
from supplychain.sbom import SBOM_MEDIA_TYPE
from supplychain.signing import (COSIGN_SIGN_PREDICATE, CYCLONEDX_PREDICATE, SLSA_PREDICATE, apply_attach_bundle,
                                 compute_statement, open_sigstore_signer)

REPO = "registry.test.invalid/kubevirt-py/handler"
OTHER = "sha256:" + "ab" * 32


class Case:
    """A copy of the release to tamper with, and the verify arguments."""

    def __init__(self, release, tmp_path):
        self.release, self.tmp = release, tmp_path
        self.dir = tmp_path / "oci"
        shutil.copytree(release["work"] / "oci1", self.dir)
        self.layout = Layout(self.dir)
        self.desc = self.layout.read_tagged("v0.1.0")
        self.digest = self.desc["digest"]
        self.manifest_path = tmp_path / "release.json"
        shutil.copy(release["manifest"], self.manifest_path)
        shutil.copy(str(release["manifest"]) + ".sigstore.json", str(self.manifest_path) + ".sigstore.json")
        self.lock = tmp_path / "test.lock.json"
        shutil.copy(release["lock"], self.lock)
        self.trusted_root, self.identity = release["root"], IDENTITY

    def referrer(self, predicate=None, unsigned=False):
        for ref in self.layout.read_referrers(self.digest):
            desc = ref["_descriptor"]
            if unsigned and desc.get("artifactType") == SBOM_MEDIA_TYPE:
                return ref
            if predicate and desc.get("annotations", {}).get("dev.sigstore.bundle.predicateType") == predicate:
                return ref
        raise AssertionError("no such referrer")

    def remove(self, ref):
        index = self.layout.read_index()
        self.layout.apply_index([m for m in index["manifests"] if m["digest"] != ref["_descriptor"]["digest"]])

    def sign(self, predicate, body, digest=None, instance=None, identity=IDENTITY):
        instance = instance or self.release["instance"]
        with open_sigstore_signer(instance.signing_context(), identity_token(identity, ISSUER)) as signer:
            bundle = signer.sign_dsse(compute_statement(REPO, digest or self.digest, predicate, body))
        return apply_attach_bundle(self.layout, self.desc, bundle, predicate)

    def resign(self, predicate, body, digest=None):
        self.remove(self.referrer(predicate))
        self.sign(predicate, body, digest)

    def attested(self, predicate):
        ref = self.referrer(predicate)
        envelope = json.loads(self.layout.read_blob(ref["layers"][0]))["dsseEnvelope"]
        import base64
        return json.loads(base64.b64decode(envelope["payload"]))["predicate"]

    def retag(self, config_user="107:107", files=None):
        """A well-formed image built by the attacker, tagged v0.1.0 in place of the signed one."""
        layer = compute_layer(files or [LayerEntry("usr/bin/hello", FILE, 0o755, data=b"evil\n")], 1_700_000_000, "x")
        evil = self.layout.apply_image(ImageConfig(user=config_user, entrypoint=["/usr/bin/hello"], env={},
                                                   created=1_700_000_000), [layer], {})
        self.layout.apply_tag(evil, "v0.1.0")
        return evil["digest"]

    def verify(self):
        return kb_inprocess("verify", "--layout", str(self.dir), "--tag", "v0.1.0", "--trusted-root",
                            str(self.trusted_root), "--certificate-identity", self.identity,
                            "--certificate-oidc-issuer", ISSUER, "--lock", str(self.lock), "--target", "handler",
                            "--builder-id", BUILDER, "--spec", str(self.release["work"] / "images" / "handler.yaml"),
                            "--release-manifest", str(self.manifest_path))


def _blob(c, digest):
    return c.layout.blob_path(digest)


def layer_byte(c):
    layer = c.layout.read_json(c.desc)["layers"][0]
    data = bytearray(_blob(c, layer["digest"]).read_bytes())
    data[100] ^= 0xFF
    _blob(c, layer["digest"]).write_bytes(bytes(data))
    return f"layout: blob {layer['digest']} content does not match its digest"


def layer_missing(c):
    layer = c.layout.read_json(c.desc)["layers"][-1]
    _blob(c, layer["digest"]).unlink()
    return f"layout: blob {layer['digest']} is missing"


def manifest_edited(c):
    path = _blob(c, c.digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    return f"layout: blob {c.digest} has size {c.desc['size'] + 1}, descriptor says {c.desc['size']}"


def manifest_rewritten(c):
    manifest = c.layout.read_json(c.desc)
    manifest["annotations"]["org.opencontainers.image.version"] = "v9"
    desc = c.layout.apply_blob(compute_json(manifest), manifest["mediaType"])
    c.layout.apply_tag(desc, "v0.1.0")
    return f"release: signed manifest maps v0.1.0 to ['{c.digest}'], layout has {desc['digest']}"


def config_user_root(c):
    manifest = c.layout.read_json(c.desc)
    config = c.layout.read_json(manifest["config"])
    config["config"]["User"] = "0:0"
    manifest["config"] = c.layout.apply_blob(compute_json(config), manifest["config"]["mediaType"])
    desc = c.layout.apply_blob(compute_json(manifest), manifest["mediaType"])
    c.layout.apply_tag(desc, "v0.1.0")
    return f"release: signed manifest maps v0.1.0 to ['{c.digest}'], layout has {desc['digest']}"


def replaced_file(c):
    new = c.retag(files=[LayerEntry("usr/bin/hello", FILE, 0o755, data=b"#!replaced\n")])
    return f"release: signed manifest maps v0.1.0 to ['{c.digest}'], layout has {new}"


def moved_tag(c):
    new = c.retag()
    return f"release: signed manifest maps v0.1.0 to ['{c.digest}'], layout has {new}"


def signature_swapped(c):
    c.resign(COSIGN_SIGN_PREDICATE, {}, OTHER)
    return "signature: bundle sha256:* is for " + OTHER + f", not the image {c.digest}"


def sbom_attestation_swapped(c):
    c.resign(CYCLONEDX_PREDICATE, c.release["sbom"], OTHER)
    return "signature: bundle sha256:* is for " + OTHER + f", not the image {c.digest}"


def provenance_swapped(c):
    c.resign(SLSA_PREDICATE, c.attested(SLSA_PREDICATE), OTHER)
    return "signature: bundle sha256:* is for " + OTHER + f", not the image {c.digest}"


def unsigned_sbom_swapped(c):
    ref = c.referrer(unsigned=True)
    c.remove(ref)
    small = dict(c.release["sbom"], components=c.release["sbom"]["components"][:3])
    new = c.layout.apply_referrer(c.desc, SBOM_MEDIA_TYPE, json.dumps(small).encode(), SBOM_MEDIA_TYPE)
    return f"sbom: unsigned SBOM referrer {new['digest']} differs from the signed SBOM attestation"


def unsigned_sbom_removed(c):
    c.remove(c.referrer(unsigned=True))
    return "sbom: expected one unsigned SBOM referrer, found 0"


def referrers_removed(c):
    c.layout.apply_index([m for m in c.layout.read_index()["manifests"] if "subject" not in m
                          and "artifactType" not in m])
    return f"signature: no image signature for {c.digest} by {IDENTITY} (issuer {ISSUER})"


def sbom_attestation_removed(c):
    c.remove(c.referrer(CYCLONEDX_PREDICATE))
    return "sbom: expected one signed SBOM attestation, found 0"


def provenance_removed(c):
    c.remove(c.referrer(SLSA_PREDICATE))
    return "provenance: expected one signed SLSA provenance, found 0"


def release_manifest_changed(c):
    c.manifest_path.write_bytes(c.manifest_path.read_bytes().replace(b"v0.1.0", b"v0.1.1", 1))
    return "release: release.json signature does not verify: *"


def release_bundle_removed(c):
    (c.tmp / "release.json.sigstore.json").unlink()
    return "release: release.json.sigstore.json: No such file or directory"


def lock_checksum(c):
    doc = json.loads(c.lock.read_text())
    pkg = next(p for p in doc["packages"] if p["name"] == "hello")
    pkg["sha256"] = "00" * 32
    c.lock.write_text(json.dumps(doc))
    return ("sbom: package set differs from lock target handler: version, arch or SHA-256 differ from the lock "
            "['hello']")


def other_ca(c):
    c.trusted_root = TestInstance("other").apply_trusted_root(c.tmp / "other_root.json")
    return "release: release.json signature does not verify: *"


def other_identity(c):
    c.identity = "https://github.com/attacker/fork/.github/workflows/release.yml@refs/tags/v0.1.0"
    return "release: release.json signature does not verify: *SANs do not match*"


def foreign_bundle(c):
    c.sign(COSIGN_SIGN_PREDICATE, {}, instance=TestInstance("foreign"))
    return "signature: bundle sha256:* does not verify: *"


def sbom_drops_package(c):
    sbom = dict(c.release["sbom"], components=[x for x in c.release["sbom"]["components"] if x["name"] != "libgreet"])
    c.resign(CYCLONEDX_PREDICATE, sbom)
    return "sbom: package set differs from lock target handler: not in the SBOM ['libgreet']"


def sbom_drops_python_package(c):
    sbom = dict(c.release["sbom"], components=[x for x in c.release["sbom"]["components"]
                                               if not x.get("purl", "").startswith("pkg:pypi/")])
    c.resign(CYCLONEDX_PREDICATE, sbom)
    return "sbom: Python packages differ from the image's: not installed [], not listed ['greeting-helper==1.0']"


def sbom_adds_component(c):
    extra = {"type": "library", "name": "backdoor", "version": "1", "purl": "pkg:generic/backdoor@1",
             "bom-ref": "backdoor"}
    c.resign(CYCLONEDX_PREDICATE, dict(c.release["sbom"], components=c.release["sbom"]["components"] + [extra]))
    return "sbom: component 'backdoor' (pkg:generic/backdoor@1) is neither a locked rpm package nor a Python package of the image"


def _sbom_files_edited(c, edit):
    sbom = json.loads(json.dumps(c.release["sbom"]))
    for comp in sbom["components"]:
        comp["components"] = [f for f in comp.get("components", []) if edit(f)]
    c.resign(CYCLONEDX_PREDICATE, sbom)


def sbom_file_hash_changed(c):
    def edit(f):
        if f["name"] == "/usr/bin/hello":
            f["hashes"] = [{"alg": "SHA-256", "content": "ee" * 32}]
        return True
    _sbom_files_edited(c, edit)
    return "sbom: file /usr/bin/hello: SHA-256 in the image * differs from the SBOM's eeeeeeeeeeeeeeee..."


def sbom_drops_generated_file(c):
    _sbom_files_edited(c, lambda f: f["name"] != "/etc/passwd")
    return "sbom: 1 files of the image are not in the SBOM, e.g. /etc/passwd"


def provenance_other_builder(c):
    prov = c.attested(SLSA_PREDICATE)
    prov["runDetails"]["builder"]["id"] = "https://attacker.example/builder"
    c.resign(SLSA_PREDICATE, prov)
    return "provenance: builder 'https://attacker.example/builder' is not allowed"


def provenance_drops_package(c):
    prov = c.attested(SLSA_PREDICATE)
    deps = prov["buildDefinition"]["resolvedDependencies"]
    prov["buildDefinition"]["resolvedDependencies"] = [d for d in deps if "libgreet" not in d.get("name", "")]
    c.resign(SLSA_PREDICATE, prov)
    return "provenance: resolvedDependencies lack locked packages ['libgreet']"


def provenance_other_tag(c):
    prov = c.attested(SLSA_PREDICATE)
    prov["buildDefinition"]["externalParameters"]["tag"] = "v0.0.9"
    c.resign(SLSA_PREDICATE, prov)
    return f"provenance: provenance names tag 'v0.0.9', not 'v0.1.0' ({c.digest})"


def provenance_other_image(c):
    prov = c.attested(SLSA_PREDICATE)
    prov["runDetails"]["metadata"]["invocationId"] = "handler@" + OTHER
    c.resign(SLSA_PREDICATE, prov)
    return f"provenance: provenance is for handler@{OTHER}, not the image v0.1.0 {c.digest}"


def sbom_drops_symlink(c):
    _sbom_files_edited(c, lambda f: f["name"] != "/var/run")
    return "sbom: 1 symlinks of the image are not in the SBOM, e.g. /var/run -> ../run"


def sbom_symlink_retargeted(c):
    def edit(f):
        if f["name"] == "/var/run":
            f["properties"] = [{"name": "kubevirt-build:symlink-target", "value": "/etc/shadow"}]
        return True
    _sbom_files_edited(c, edit)
    return "sbom: symlink /var/run: target in the image ../run differs from the SBOM's /etc/shadow"


CASES = [layer_byte, layer_missing, manifest_edited, manifest_rewritten, config_user_root, replaced_file, moved_tag,
         signature_swapped, sbom_attestation_swapped, provenance_swapped, unsigned_sbom_swapped,
         unsigned_sbom_removed, referrers_removed, sbom_attestation_removed, provenance_removed,
         release_manifest_changed, release_bundle_removed, lock_checksum, other_ca, other_identity, foreign_bundle,
         sbom_drops_package, sbom_drops_python_package, sbom_adds_component, sbom_file_hash_changed,
         sbom_drops_generated_file, provenance_other_builder,
         provenance_drops_package, provenance_other_tag, provenance_other_image,
         sbom_drops_symlink, sbom_symlink_retargeted]


@pytest.mark.parametrize("tamper", CASES, ids=[f.__name__ for f in CASES])
def test_tampering_fails_verify_with_one_line(release, tmp_path, tamper):
    import re

    c = Case(release, tmp_path)
    expected = tamper(c)
    proc = c.verify()
    assert proc.returncode == 1, proc.stdout
    last = proc.stdout.splitlines()[-1]
    pattern = re.escape("FAIL " + expected).replace(r"\*", ".*")  # only * is a wildcard
    assert re.fullmatch(pattern, last), last
    assert sum(line.startswith("FAIL") for line in proc.stdout.splitlines()) == 1


def test_untampered_copy_verifies(release, tmp_path):
    proc = Case(release, tmp_path).verify()
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "verified", proc.stdout


def test_strict_is_the_default(release):
    proc = kb_inprocess("verify", "--layout", str(release["work"] / "oci1"), "--tag", "v0.1.0", "--trusted-root",
                        str(release["root"]), "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER,
                        "--lock", str(release["lock"]), "--target", "handler")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["FAIL strict: missing --release-manifest, --spec, --builder-id "
                                        "(or --no-strict to skip those checks)"]


@pytest.mark.parametrize("entries,expected", [
    ([LayerEntry("usr/bin/python3", FILE, 0o4755, data=b"x")], "/usr/bin/python3 is setuid (mode 4755, owner 0:0)"),
    ([LayerEntry("usr/bin/x", FILE, 0o2755, 0, 42, data=b"x")], "/usr/bin/x is setgid (mode 2755, owner 0:42)"),
    ([LayerEntry("etc/conf", FILE, 0o666, data=b"x")], "/etc/conf is writable by others (mode 0666)"),
    ([LayerEntry("var/spool", DIR, 0o777)], "/var/spool is writable by others (mode 0777)"),
    ([LayerEntry("tmp", DIR, 0o1777), LayerEntry("usr/bin/ok", FILE, 0o755, data=b"x"),
      LayerEntry("etc/shadow-link", SYMLINK, 0o777, link="/etc/shadow")], None),
])
def test_file_mode_policy(entries, expected):
    from supplychain.errors import SupplyChainError
    from supplychain.verify import check_file_modes

    view = {e.path: e for e in entries}
    if expected is None:
        check_file_modes(view)
    else:
        with pytest.raises(SupplyChainError) as info:
            check_file_modes(view)
        assert str(info.value) == expected


def test_sbom_lists_symlinks_with_their_targets(release):
    links = {f["name"]: f for c in release["sbom"]["components"] for f in c.get("components", [])
             if f.get("properties")}
    assert links["/var/run"] == {"type": "file", "name": "/var/run", "bom-ref": "file:/var/run",
                                 "properties": [{"name": "kubevirt-build:symlink-target", "value": "../run"}]}
