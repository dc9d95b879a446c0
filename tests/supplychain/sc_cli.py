"""Running `kubevirt-build` in tests, and the shared end-to-end release: a locked, built (twice),
keyless-signed image and a signed release manifest made through the command line against a
private sigstore instance on loopback (sc_sigstore.SigstoreServer)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sc_sigstore import identity_token, identity_token_raw

IDENTITY = "https://github.com/kubevirt-py/kubevirt-py/.github/workflows/release.yml@refs/tags/v0.1.0"
ISSUER = "https://token.actions.githubusercontent.com"
BUILDER = "https://github.com/kubevirt-py/kubevirt-py/.github/workflows/release.yml"
EPOCH = "1700000000"
KB = [sys.executable, "-c", "from supplychain.cli import main; main()"]
# the subprocess imports the same supplychain package as this process (worktree or checkout)
BUILD_DIR = str(Path(__import__("supplychain").__file__).resolve().parents[1])


class _Result:
    def __init__(self, returncode, stdout, stderr=""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def kb_inprocess(*args):
    """The same click command in this process (CliRunner): no interpreter start-up per check."""
    from click.testing import CliRunner

    from supplychain.cli import cli
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return _Result(result.exit_code, result.stdout)


def kb(*args, cwd=None, check=True, offline=False, env=None):
    """Run `kubevirt-build *args` in a fresh interpreter with a minimal environment; `offline`
    runs it in a new network namespace (no network at all)."""
    # offline: no network namespace access at all (loopback down), as a verifier in an air gap
    wrap = ["unshare", "--user", "--map-root-user", "--net"] if offline and shutil.which("unshare") else []
    proc = subprocess.run([*wrap, *KB, *args], capture_output=True, text=True, cwd=cwd,
                          env={"SOURCE_DATE_EPOCH": EPOCH, "PATH": "/usr/bin:/bin", "PYTHONPATH": BUILD_DIR,
                               **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"kubevirt-build {args[0]} failed: {proc.stdout}{proc.stderr}")
    return proc


def apply_tiny_wheel(path: Path, name: str = "greeting_helper", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel (PEP 427: module, METADATA, WHEEL, RECORD), fixed dates."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {f"{name}.py": "GREETING = 'hi'\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/RECORD": ""}
    with zipfile.ZipFile(path, "w") as zf:
        for fname, text in files.items():
            zf.writestr(zipfile.ZipInfo(fname, (2020, 1, 1, 0, 0, 0)), text)
    return path


def make_release(rpm_world, served, sigstore_server, tmp_path_factory):
    """A locked, built, signed image and release manifest (the `release` fixture)."""
    from sc_rpmrepo import apply_createrepo

    work = tmp_path_factory.mktemp("e2e")
    root, url = served
    repo_dir = root / "e2e-repo"
    (repo_dir / "Packages").mkdir(parents=True)
    for rpm in rpm_world.signed.values():
        shutil.copy(rpm, repo_dir / "Packages" / rpm.name)
    apply_createrepo(repo_dir)
    repomd = repo_dir / "repodata" / "repomd.xml"  # signed metadata: the default for rpm repositories
    rpm_world.gpg("--yes", "-u", rpm_world.fingerprints["repo"], "--armor", "--detach-sign", "-o",
                  str(repomd) + ".asc", str(repomd))
    (work / "repos").mkdir()
    (work / "repos" / "test.yaml").write_text(yaml.safe_dump({
        "kind": "rpm",
        "repositories": [{"name": "test-x86_64", "baseurl": url + "e2e-repo/", "arch": "x86_64",
                          "keys": [str(rpm_world.keys["repo"])], "distro": "kubevirt-test-1"}],
        "targets": {"handler": {"install": ["hello", "greeter-data"], "exclude": ["fakeshell"]}}}))
    (work / "images").mkdir()
    (work / "hello.conf").write_text("greeting = hi\n")
    (work / "images" / "handler.yaml").write_text(yaml.safe_dump({
        "name": "handler", "repository": "registry.test.invalid/kubevirt-py/handler",
        "lock": "../locks/test.lock.json", "target": "handler",
        "accounts": {"groups": [{"name": "qemu", "gid": 107}],
                     "users": [{"name": "qemu", "uid": 107, "gid": 107, "home": "/home/qemu"}]},
        "runAs": "107:107", "entrypoint": ["/usr/bin/hello"], "environment": {"PATH": "/usr/bin"},
        "files": [{"src": "../hello.conf", "dst": "/etc/hello.conf", "mode": "0640", "uid": 0, "gid": 107}],
        "capabilities": {"/usr/bin/hello": ["cap_net_bind_service"]},
        "paths": [{"path": "/home/qemu", "type": "dir", "uid": 107, "gid": 107, "mode": "0700"},
                  {"path": "/var/run", "type": "symlink", "target": "../run"}]}))
    (work / "locks").mkdir()
    lock = work / "locks" / "test.lock.json"
    kb("lock", "--config", str(work / "repos" / "test.yaml"), "--out", str(lock), "--cache", str(work / "cache"))
    wheel = apply_tiny_wheel(work / "greeting_helper-1.0-py3-none-any.whl")
    outs = []
    for n in (1, 2):  # second build from an empty cache: fetch + verify again, same digest
        proc = kb("build", "--spec", str(work / "images" / "handler.yaml"), "--out", str(work / f"oci{n}"),
                   "--tag", "v0.1.0", "--cache", str(work / f"cache{n}"), "--sbom-dir", str(work / "sbom"),
                   "--builder-id", BUILDER, "--wheel", str(wheel))
        outs.append(proc.stdout.split()[2])
    instance = sigstore_server.instance
    sbom = json.loads((work / "sbom" / "handler.cdx.json").read_text())
    token = identity_token(IDENTITY, ISSUER)
    # keyless signing by the CLI against the private instance, given only as files + a token
    trust_config = instance.apply_client_trust_config(work / "trust_config.json", sigstore_server.url)
    (work / "token").write_text(identity_token_raw(IDENTITY, ISSUER))
    signing = ["--trust-config", str(trust_config), "--identity-token", str(work / "token")]
    kb("sign", "--layout", str(work / "oci1"), "--tag", "v0.1.0", "--spec", str(work / "images" / "handler.yaml"),
        "--sbom", str(work / "sbom" / "handler.cdx.json"), *signing)
    manifest = work / "release.json"
    kb("release-manifest", "--out", str(manifest), "--version", "v0.1.0", "--sign", *signing,
        "--image", f"handler={work / 'oci1'}:v0.1.0:registry.test.invalid/kubevirt-py/handler", cwd=work)
    assert json.loads(manifest.read_text())["images"]["handler"]["digest"] == outs[0]
    trusted_root = instance.apply_trusted_root(work / "trusted_root.json")
    return {"work": work, "digests": outs, "lock": lock, "instance": instance, "root": trusted_root,
            "manifest": manifest, "sbom": sbom, "token": token}


