"""Fixtures of the supply-chain tests: a session-wide RPM world (keys, RPMs, signatures) and
a loopback HTTP server; helpers to publish a repository and write its configuration."""
import shutil

import pytest
import yaml

from sc_rpmrepo import LoopbackServer, RpmWorld, apply_createrepo

EXPIRED_AT = "20200101T000000"


@pytest.fixture(scope="session")
def rpm_world(tmp_path_factory):
    if not all(shutil.which(t) for t in ("rpmbuild", "rpmsign", "rpmkeys", "createrepo_c", "gpg", "rpm2archive")):
        pytest.fail("rpm tooling missing: run ./scripts/install.sh")
    world = RpmWorld(tmp_path_factory.mktemp("rpmworld"))
    world.apply_key("repo")
    world.apply_key("stranger")
    world.apply_key("retired")
    world.apply_key("old", expire="1d", faked_time=EXPIRED_AT)
    world.revoked_key = world.apply_revoked_copy("retired")
    world.rpms = {name: world.apply_rpm(name) for name in ("hello", "libgreet", "libgreet-old",
                                                           "greeter-data", "fakeshell")}
    signed = world.root / "signed"
    world.signed = {name: world.apply_sign(rpm, "repo", signed / rpm.name) for name, rpm in world.rpms.items()}
    world.by_stranger = world.apply_sign(world.rpms["hello"], "stranger", world.root / "stranger" / "hello.rpm")
    world.by_retired = world.apply_sign(world.rpms["hello"], "retired", world.root / "retired" / "hello.rpm")
    world.by_old = world.apply_sign(world.rpms["hello"], "old", world.root / "old" / "hello.rpm",
                                    faked_time="20200101T000100")
    yield world
    world.close()


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    server = LoopbackServer(root)
    yield root, server.url
    server.close()


@pytest.fixture
def publish(served, tmp_path, rpm_world):
    """publish(name, {file name: rpm path}, keys=[...]) -> config path of a new repository."""
    root, url = served

    def _publish(name, rpms, keys=("repo",), targets=None, key_files=None, sign_metadata=None):
        repo_dir = root / f"{tmp_path.name}-{name}"
        (repo_dir / "Packages").mkdir(parents=True)
        for fname, src in rpms.items():
            shutil.copy(src, repo_dir / "Packages" / fname)
        apply_createrepo(repo_dir)
        if sign_metadata:
            repomd = repo_dir / "repodata" / "repomd.xml"
            rpm_world.gpg("--yes", "-u", rpm_world.fingerprints[sign_metadata], "--armor", "--detach-sign",
                          "-o", str(repomd) + ".asc", str(repomd))
        config_dir = tmp_path / "repos"
        config_dir.mkdir(exist_ok=True)
        key_paths = key_files or [rpm_world.keys[k] for k in keys]
        doc = {"kind": "rpm",
               "repositories": [{"name": name, "baseurl": f"{url}{repo_dir.name}/", "arch": "x86_64",
                                 "keys": [str(k) for k in key_paths],
                                 "signedMetadata": sign_metadata is not None}],
               "targets": targets or {"app": {"install": ["hello", "greeter-data"], "exclude": ["fakeshell"]}}}
        path = config_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path, repo_dir

    return _publish


@pytest.fixture(scope="session")
def sigstore_server():
    """A private sigstore instance (Fulcio + Rekor) on loopback, shared by the session."""
    from sc_sigstore import SigstoreServer, TestInstance

    server = SigstoreServer(TestInstance())
    yield server
    server.close()


@pytest.fixture(scope="session")
def release(rpm_world, served, sigstore_server, tmp_path_factory):
    """The end-to-end release (sc_cli.make_release), built once per session."""
    from sc_cli import make_release

    return make_release(rpm_world, served, sigstore_server, tmp_path_factory)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real OCI registry (Debian's docker-registry, distribution 2.8) on a free loopback port;
    the `docker-registry` package comes from scripts/apt-packages.txt."""
    import socket
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry missing: run ./scripts/install.sh")
    root = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "w"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(100):
        try:
            opener.open(f"http://127.0.0.1:{port}/v2/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(root / 'registry.log').read_text()[-500:]}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
