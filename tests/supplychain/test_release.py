"""`kubevirt-build release` end to end: both images built, SBOMs and provenance, all signed
against the private sigstore instance, the signed release manifest, and a signed git tag made
with the committed test release signer (build/keys/test-release-signer.*); `verify-tag` checks it
against build/keys/release-signers.asc, and refuses tags signed by keys not pinned there."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sc_cli import BUILDER, IDENTITY, ISSUER, kb, kb_inprocess

KEYS = Path(__file__).resolve().parents[2] / "build" / "keys"


def _git(repo, *args, env=None):
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def released(release, rpm_world, tmp_path_factory):
    work = tmp_path_factory.mktemp("rel")
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(gnupg), "GIT_AUTHOR_NAME": "r", "GIT_AUTHOR_EMAIL": "r@kubevirt-py.invalid",
           "GIT_COMMITTER_NAME": "r", "GIT_COMMITTER_EMAIL": "r@kubevirt-py.invalid", "HOME": str(work)}
    subprocess.run(["gpg", "--batch", "--quiet", "--import", str(KEYS / "test-release-signer.secret.asc")],
                   env={**os.environ, **env}, check=True, capture_output=True)
    fpr = subprocess.run(["gpg", "--with-colons", "--list-secret-keys"], env={**os.environ, **env},
                         capture_output=True, text=True).stdout.split("fpr:::::::::")[1].split(":")[0]
    repo = work / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README").write_text("release\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "release", env={**os.environ, **env})
    images = release["work"] / "images"
    spec = yaml.safe_load((images / "handler.yaml").read_text())
    spec.update({"name": "control-plane", "repository": "registry.test.invalid/kubevirt-py/control-plane",
                 "runAs": "65532:65532",
                 "accounts": {"groups": [{"name": "qemu", "gid": 107}, {"name": "nonroot", "gid": 65532}],
                              "users": [{"name": "qemu", "uid": 107, "gid": 107, "home": "/home/qemu"},
                                        {"name": "nonroot", "uid": 65532, "gid": 65532, "home": "/home/nonroot"}]},
                 "paths": [{"path": "/home/nonroot", "type": "dir", "uid": 65532, "gid": 65532, "mode": "0700"}]})
    (images / "control-plane.yaml").write_text(yaml.safe_dump(spec))
    proc = kb("release", "--version", "v0.1.0", "--spec", str(images / "control-plane.yaml"),
              "--spec", str(images / "handler.yaml"), "--out-dir", str(work / "out"), "--repo", str(repo),
              "--cache", str(release["work"] / "cache1"), "--builder-id", BUILDER, "--tag-key", fpr,
              "--trust-config", str(release["work"] / "trust_config.json"),
              "--identity-token", str(release["work"] / "token"), env=env)
    # a tag over the same commit by a key that is not in build/keys/ (the RPM world's stranger)
    _git(repo, "-c", "gpg.program=gpg", "tag", "-s", "-u", rpm_world.fingerprints["stranger"], "-m", "forged",
         "v0.1.0-forged", env={**os.environ, **env, "GNUPGHOME": str(rpm_world.gnupg)})
    return {"work": work, "repo": repo, "out": work / "out", "stdout": proc.stdout, "fpr": fpr,
            "head": _git(repo, "rev-parse", "HEAD"), "lock": release["lock"], "root": release["root"],
            "images": images, "env": env, "cache": release["work"] / "cache1",
            "trust_config": release["work"] / "trust_config.json", "token": release["work"] / "token"}


def test_release_builds_signs_and_tags_both_images(released):
    doc = json.loads((released["out"] / "release.json").read_text())
    assert doc["version"] == "v0.1.0" and doc["gitCommit"] == released["head"]
    assert sorted(doc["images"]) == ["control-plane", "handler"]
    assert {i["tag"] for i in doc["images"].values()} == {"v0.1.0-control-plane", "v0.1.0-handler"}
    assert (released["out"] / "release.json.sigstore.json").is_file()
    assert sorted(p.name for p in (released["out"] / "sbom").iterdir()) == ["control-plane.cdx.json", "handler.cdx.json"]
    assert released["stdout"].splitlines()[-1].endswith(f"signed by {IDENTITY}, git tag v0.1.0 signed")
    assert _git(released["repo"], "cat-file", "-t", "v0.1.0") == "tag"


@pytest.mark.parametrize("name", ["control-plane", "handler"])
def test_each_released_image_verifies_against_the_signed_manifest(released, name):
    proc = kb_inprocess("verify", "--layout", str(released["out"] / "oci"), "--tag", f"v0.1.0-{name}",
                        "--trusted-root", str(released["root"]), "--certificate-identity", IDENTITY,
                        "--certificate-oidc-issuer", ISSUER, "--lock", str(released["lock"]), "--target", "handler",
                        "--builder-id", BUILDER, "--spec", str(released["images"] / f"{name}.yaml"),
                        "--release-manifest", str(released["out"] / "release.json"))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines()[-1] == "verified"


def _verify_tag(released, tag, *extra):
    return kb("verify-tag", "--repo", str(released["repo"]), "--tag", tag, *extra, check=False)


def test_verify_tag_checks_the_release_tag_end_to_end(released):
    proc = _verify_tag(released, "v0.1.0", "--allow-test-key", "--release-manifest",
                       str(released["out"] / "release.json"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"ok tag: v0.1.0 signed by pinned key {released['fpr']} (kubevirt-py test release signer")
    assert lines[1] == f"ok commit: v0.1.0 points at {released['head']}"
    assert lines[2].startswith("ok release manifest: tag message names ")


def test_committed_release_signers_hold_the_test_signer_only_as_a_marked_test_key(released):
    proc = _verify_tag(released, "v0.1.0")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"kubevirt-build: tag v0.1.0: signed by test key {released['fpr']} "
                                   "(kubevirt-py test release signer (TEST KEY, NOT FOR RELEASES) "
                                   "<test-release-signer@kubevirt-py.invalid>); not a release signer "
                                   "(--allow-test-key to accept it)")


def test_tag_signed_by_a_key_not_in_build_keys_is_refused(released):
    proc = _verify_tag(released, "v0.1.0-forged", "--allow-test-key")
    assert proc.returncode == 1
    assert proc.stderr.startswith("kubevirt-build: tag v0.1.0-forged: signed by unpinned key ")
    assert len(proc.stderr.splitlines()) == 1


def test_changed_release_manifest_no_longer_matches_the_tag(released, tmp_path):
    manifest = tmp_path / "release.json"
    manifest.write_bytes((released["out"] / "release.json").read_bytes().replace(b'"version"', b'"version" '))
    proc = _verify_tag(released, "v0.1.0", "--allow-test-key", "--release-manifest", str(manifest))
    assert proc.returncode == 1
    assert proc.stderr.startswith("kubevirt-build: tag v0.1.0: message names release.json sha256:")


def test_release_refuses_an_existing_tag_in_one_line(released):
    proc = kb("release", "--version", "v0.1.0", "--spec", str(released["images"] / "handler.yaml"),
              "--out-dir", str(released["work"] / "again"), "--repo", str(released["repo"]),
              "--cache", str(released["work"] / "cache"), "--key", str(KEYS / "absent.key"), env=released["env"],
              check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert "absent.key" in proc.stderr
    shutil.rmtree(released["work"] / "again", ignore_errors=True)


def _clone(released, tmp_path):
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(released["repo"]), str(clone))
    return clone


def _release_from(released, repo, out, *extra):
    return kb("release", "--version", "v0.2.0", "--spec", str(released["images"] / "handler.yaml"),
              "--out-dir", str(out), "--repo", str(repo), "--no-git-tag",
              "--cache", str(released["cache"]), "--trust-config", str(released["trust_config"]),
              "--identity-token", str(released["token"]), *extra, env=released["env"], check=False)


def test_release_refuses_a_checkout_with_local_changes(released, tmp_path):
    clone = _clone(released, tmp_path)
    (clone / "README").write_text("changed after the commit\n")
    proc = _release_from(released, clone, tmp_path / "out")
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.splitlines() == [f"kubevirt-build: {clone} has local changes (README); "
                                        "commit or stash them before a release"]
    assert not (tmp_path / "out" / "release.json").exists()


def test_release_refuses_a_wheel_not_built_from_the_commit(released, tmp_path):
    from sc_cli import apply_tiny_wheel

    clone = _clone(released, tmp_path)
    wheel = apply_tiny_wheel(tmp_path / "greeting_helper-1.0-py3-none-any.whl")
    proc = _release_from(released, clone, tmp_path / "out", "--wheel", str(wheel))
    assert proc.returncode == 1, proc.stdout
    head = _git(clone, "rev-parse", "HEAD")
    assert proc.stderr.splitlines() == [
        f"kubevirt-build: wheel {wheel.name}: greeting_helper.py is not in commit {head[:12]} (greeting_helper.py); "
        "build the wheel from the clean checkout being released"]


def test_wheel_files_are_compared_with_the_commit_through_the_hatch_package_map(released, tmp_path):
    import zipfile

    from supplychain.errors import SupplyChainError
    from supplychain.sourcetree import check_wheel_from_commit

    clone = _clone(released, tmp_path)
    (clone / "build" / "greeting_helper").mkdir(parents=True)
    (clone / "build" / "greeting_helper" / "__init__.py").write_text("GREETING = 'hi'\n")
    (clone / "pyproject.toml").write_text('[tool.hatch.build.targets.wheel]\npackages = ["build/greeting_helper"]\n')
    _git(clone, "add", "build", "pyproject.toml")
    _git(clone, "commit", "-q", "-m", "package", env={**os.environ, **released["env"]})
    head = _git(clone, "rev-parse", "HEAD")

    def wheel(text):
        path = tmp_path / "w.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("greeting_helper/__init__.py", text)
            zf.writestr("greeting_helper-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        return path

    assert check_wheel_from_commit(clone, head, wheel("GREETING = 'hi'\n")) == 1
    with pytest.raises(SupplyChainError, match=r"greeting_helper/__init__.py differs from commit .* "
                                                r"\(build/greeting_helper/__init__.py\)"):
        check_wheel_from_commit(clone, head, wheel("GREETING = 'swapped'\n"))


def _build_in(released, cwd, out):
    return kb("build", "--spec", str(released["images"] / "handler.yaml"), "--out", str(out), "--tag", "t",
              "--cache", str(released["cache"]), "--sbom-dir", str(out / "sbom"), "--builder-id", BUILDER,
              cwd=cwd, check=False)


def test_build_provenance_names_the_commit_of_the_tree_it_runs_in_and_marks_local_changes(released, tmp_path):
    clone = _clone(released, tmp_path)
    head = _git(clone, "rev-parse", "HEAD")
    proc = _build_in(released, clone, tmp_path / "clean")
    assert proc.returncode == 0, proc.stderr
    prov = json.loads((tmp_path / "clean" / "handler.provenance.json").read_text())
    source = prov["buildDefinition"]["resolvedDependencies"][0]
    assert source == {"uri": "git+https://github.com/kubevirt-py/kubevirt-py", "digest": {"gitCommit": head}}
    assert "sourceLocalChanges" not in prov["buildDefinition"]["internalParameters"]
    (clone / "README").write_text("changed after the commit\n")
    proc = _build_in(released, clone, tmp_path / "dirty")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["kubevirt-build: warning: . has local changes; the provenance marks them"]
    prov = json.loads((tmp_path / "dirty" / "handler.provenance.json").read_text())
    source = prov["buildDefinition"]["resolvedDependencies"][0]
    assert source["digest"] == {"gitCommit": head} and source["annotations"] == {"localChanges": True}
    assert prov["buildDefinition"]["internalParameters"]["sourceLocalChanges"] is True


@pytest.mark.parametrize("sbom,tag,expected", [
    ("control-plane", "v0.1.0-handler", "SBOM describes control-plane@{control-plane}, not the image v0.1.0-handler "
                                        "{handler}"),
    ("handler", "v0.1.0-control-plane", "SBOM describes handler@{handler}, not the image v0.1.0-control-plane "
                                        "{control-plane}"),
])
def test_sign_refuses_an_sbom_of_another_image(released, sbom, tag, expected):
    doc = json.loads((released["out"] / "release.json").read_text())
    digests = {name: image["digest"] for name, image in doc["images"].items()}
    spec = tag.removeprefix("v0.1.0-")
    proc = kb("sign", "--layout", str(released["out"] / "oci"), "--tag", tag,
              "--spec", str(released["images"] / f"{spec}.yaml"),
              "--sbom", str(released["out"] / "sbom" / f"{sbom}.cdx.json"), "--key", str(KEYS / "absent.key"),
              check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["kubevirt-build: " + expected.format(**digests)]


def test_sign_refuses_a_provenance_of_another_tag(released, tmp_path):
    layout = tmp_path / "oci"
    shutil.copytree(released["out"] / "oci", layout)
    from supplychain.oci import Layout

    Layout(layout).apply_tag(Layout(layout).read_tagged("v0.1.0-handler"), "v0.2.0-handler")
    proc = kb("sign", "--layout", str(layout), "--tag", "v0.2.0-handler",
              "--spec", str(released["images"] / "handler.yaml"),
              "--sbom", str(released["out"] / "sbom" / "handler.cdx.json"), "--key", str(KEYS / "absent.key"),
              check=False)
    assert proc.returncode == 1
    digest = Layout(layout).read_tagged("v0.1.0-handler")["digest"]
    assert proc.stderr.splitlines() == [f"kubevirt-build: provenance names tag 'v0.1.0-handler', not "
                                        f"'v0.2.0-handler' ({digest})"]


def test_verify_uses_the_tag_the_signed_manifest_names_for_an_image_pulled_under_another_tag(released, tmp_path):
    """SECURITY.md pulls a release image into a layout under a local tag of the user's choice;
    the release check finds the image by digest and the provenance is compared with the tag the
    signed manifest names."""
    from supplychain.oci import Layout

    layout = tmp_path / "oci"
    shutil.copytree(released["out"] / "oci", layout)
    desc = Layout(layout).read_tagged("v0.1.0-control-plane")
    Layout(layout).apply_tag(desc, "mine")
    args = ["--trusted-root", str(released["root"]), "--certificate-identity", IDENTITY,
            "--certificate-oidc-issuer", ISSUER, "--lock", str(released["lock"]), "--target", "handler",
            "--builder-id", BUILDER, "--spec", str(released["images"] / "control-plane.yaml"),
            "--release-manifest", str(released["out"] / "release.json")]
    proc = kb_inprocess("verify", "--layout", str(layout), "--tag", "mine", *args)
    assert proc.returncode == 0, proc.stdout
    assert (f"ok release: signed release manifest maps v0.1.0-control-plane (control-plane) to {desc['digest']} "
            "(layout tag mine)") in proc.stdout.splitlines()
    assert proc.stdout.splitlines()[-1] == "verified"
    # a tag the manifest names must still point at its own image (moved tag)
    Layout(layout).apply_tag(desc, "v0.1.0-handler")
    proc = kb_inprocess("verify", "--layout", str(layout), "--tag", "v0.1.0-handler", *args)
    assert proc.returncode == 1
    handler = json.loads((released["out"] / "release.json").read_text())["images"]["handler"]["digest"]
    assert proc.stdout.splitlines()[-1] == (f"FAIL release: signed manifest maps v0.1.0-handler to ['{handler}'], "
                                            f"layout has {desc['digest']}")


def test_untracked_files_and_the_builds_own_sbom_are_not_local_changes(released, tmp_path):
    from supplychain.sourcetree import read_local_changes

    clone = _clone(released, tmp_path)
    (clone / "dist").mkdir()
    (clone / "dist" / "x.whl").write_bytes(b"w")
    (clone / "sbom").mkdir()
    (clone / "sbom" / "a.cdx.json").write_text("{}")
    _git(clone, "add", "sbom")
    _git(clone, "commit", "-q", "-m", "sbom", env={**os.environ, **released["env"]})
    (clone / "sbom" / "a.cdx.json").write_text('{"new": 1}')
    assert read_local_changes(clone, (clone / "sbom",)) == []
    assert read_local_changes(clone) == ["sbom/a.cdx.json"]
