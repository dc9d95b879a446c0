"""Every refusal is one readable line on stderr: no exception class names, no contradictory
wording, no library dumps (issue 15, new-user security review)."""
import subprocess

from sc_cli import kb


def _line(proc):
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_release_manifest_with_a_malformed_image_argument(tmp_path):
    proc = kb("release-manifest", "--out", str(tmp_path / "r.json"), "--version", "v1", "--image", "garbage",
              check=False)
    assert _line(proc) == "kubevirt-build: --image garbage: expected NAME=LAYOUT:TAG:REPOSITORY"


def test_build_with_a_file_that_is_not_a_wheel_names_it(release, tmp_path):
    not_wheel = tmp_path / "README.md"
    not_wheel.write_text("# not a wheel\n")
    proc = kb("build", "--spec", str(release["work"] / "images" / "handler.yaml"), "--out", str(tmp_path / "oci"),
              "--tag", "t", "--cache", str(release["work"] / "cache1"), "--sbom-dir", str(tmp_path / "sbom"),
              "--wheel", str(not_wheel), check=False)
    assert _line(proc) == f"kubevirt-build: wheel {not_wheel}: not a wheel (not a zip file)"


def test_layout_errors_carry_no_exception_class_name(tmp_path):
    proc = kb("push", "--layout", str(tmp_path / "absent"), "--tag", "v1", "--to", "127.0.0.1:1/x", check=False)
    assert _line(proc) == f"kubevirt-build: tag 'v1' names 0 manifests in {tmp_path / 'absent'}/index.json"


def test_verify_tag_on_a_missing_repository_or_tag(tmp_path):
    proc = kb("verify-tag", "--repo", str(tmp_path / "nowhere"), "--tag", "v1", check=False)
    assert _line(proc) == f"kubevirt-build: {tmp_path / 'nowhere'} is not a git repository"
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    proc = kb("verify-tag", "--repo", str(tmp_path / "repo"), "--tag", "v1", check=False)
    assert _line(proc) == f"kubevirt-build: tag v1 does not exist in {tmp_path / 'repo'} (git fetch --tags?)"


def test_a_bad_trust_config_is_named_without_a_pydantic_dump(release, tmp_path):
    bad = tmp_path / "trust.json"
    bad.write_text("{}")
    proc = kb("release-manifest", "--out", str(tmp_path / "r.json"), "--version", "v1", "--sign",
              "--trust-config", str(bad), "--identity-token", str(release["work"] / "token"),
              "--image", f"handler={release['work'] / 'oci1'}:v0.1.0:registry.test.invalid/kubevirt-py/handler",
              check=False)
    assert _line(proc) == f"kubevirt-build: trust config {bad}: not a ClientTrustConfig: mediaType: Field required"
