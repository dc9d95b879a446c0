"""The project's real images from the committed Debian lock: the InRelease -> Packages -> .deb
chain verifies with the pinned archive keys, the control-plane image builds reproducibly,
umoci shows the numeric non-root user and no /bin/sh, and its Python runs as that user from the
unpacked root file system and answers /healthz. Needs deb.debian.org (allowed here) unless the cache is warm."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from supplychain.builder import apply_build
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.lockfile import check_lock_fresh, compute_target_packages, read_lock
from supplychain.packages import check_deb_chain
from supplychain.pylock import read_python_lock
from supplychain.sbom import compute_sbom

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "build" / "locks" / "debian-bookworm.lock.json"
CACHE = Path(os.environ.get("KUBEVIRT_BUILD_CACHE", Path.home() / ".cache" / "kubevirt-build"))


def _archive_reachable() -> bool:
    try:
        urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release.gpg", timeout=5).read()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _archive_reachable() and not CACHE.exists(),
                                reason="needs deb.debian.org or a warm cache")


def test_committed_lock_is_fresh_and_its_inrelease_verifies_with_pinned_keys():
    lock = read_lock(LOCK)
    check_lock_fresh(lock, LOCK)
    pkg = next(p for p in lock["packages"] if p["name"] == "libc6")
    signers = check_deb_chain(lock, LOCK.parent, pkg, Cache(CACHE))
    assert signers == pkg["signer"]
    assert "4D64FEC119C2029067D6E791F8D2585B8783D481" in signers.split(",")  # Debian 12 stable release key


def test_a_deb_entry_changed_in_the_lock_is_refused():
    lock = read_lock(LOCK)
    pkg = dict(next(p for p in lock["packages"] if p["name"] == "netbase"), sha256="0" * 64)
    with pytest.raises(SupplyChainError, match=r"^package netbase_6.4_all: sha256/size in the lock differ from the signed index$"):
        check_deb_chain(lock, LOCK.parent, pkg, Cache(CACHE))


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """The control-plane image built from the committed locks plus the project's own wheel."""
    tmp = tmp_path_factory.mktemp("cp")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    wheels = list((tmp / "dist").glob("kubevirt_py-*.whl"))
    spec = ROOT / "build" / "images" / "control-plane.yaml"
    first = apply_build(spec, tmp / "a", "v0", Cache(CACHE), wheels, 1_700_000_000)
    return tmp, spec, wheels, first


def test_control_plane_image_is_reproducible_and_its_sbom_lists_every_package(control_plane):
    tmp, spec, wheels, first = control_plane
    second = apply_build(spec, tmp / "b", "v0", Cache(CACHE), wheels, 1_700_000_000)
    assert first.digest == second.digest
    sbom = json.loads(compute_sbom(first, "debian", 1_700_000_000))
    debs = {c["name"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/debian/")}
    libc = next(c for c in sbom["components"] if c["name"] == "libc6")
    assert libc["purl"].endswith("?arch=amd64&distro=bookworm")
    assert debs == {p["name"] for p in compute_target_packages(read_lock(LOCK), "control-plane")}
    wheels_in_sbom = {c["name"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    _, locked = read_python_lock(ROOT / "build" / "locks" / "python-runtime.txt")
    assert {n.lower().replace("_", "-") for n in wheels_in_sbom} == {e["name"] for e in locked} | {"kubevirt-py"}


def _layer_file(layout_dir, tag, path):
    import io
    import tarfile

    from supplychain.oci import Layout

    layout, found = Layout(layout_dir), None
    for tar_bytes in layout.read_layer_tars(layout.read_tagged(tag)):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for m in tar.getmembers():
                if m.name == path and m.isfile():
                    found = tar.extractfile(m).read()
    return found


def test_scanner_reads_the_same_packages_from_dpkg_status_as_the_sbom_lists(control_plane):
    """What Trivy/Syft read (/var/lib/dpkg/status) == the SBOM's deb components == the lock."""
    from supplychain.dpkgdb import read_dpkg_status

    tmp, _, _, first = control_plane
    status = read_dpkg_status(_layer_file(tmp / "a", "v0", "var/lib/dpkg/status"))
    sbom = json.loads(compute_sbom(first, "debian", 1_700_000_000))
    listed = {(c["name"], c["version"], c["purl"].split("arch=")[1].split("&")[0]) for c in sbom["components"]
              if c.get("purl", "").startswith("pkg:deb/")}
    assert status == listed
    assert len(status) == len(compute_target_packages(read_lock(LOCK), "control-plane"))
    files = {f["name"]: c["name"] for c in sbom["components"] for f in c.get("components", [])}
    assert files["/var/lib/dpkg/status"] == "kubevirt-build" and files["/usr/bin/python3.11"] == "python3.11-minimal"
    assert len(files) == len(first.files) + len(first.links) and len(first.files) > 1000


@pytest.mark.parametrize("image", ["control-plane", "handler"])
def test_committed_sboms_match_a_fresh_build(control_plane, handler, image):
    """sbom/<image>.cdx.json is what `kubevirt-build build` writes; it drifts when a lock, a spec
    or the build changes. Regenerate with the two build commands of docs/supply-chain.md."""
    from supplychain.sbom import compute_sbom_baseline

    build = control_plane[3] if image == "control-plane" else handler
    fresh = compute_sbom_baseline(json.loads(compute_sbom(build, "debian", 1_700_000_000)))
    committed = compute_sbom_baseline(json.loads((ROOT / "sbom" / f"{image}.cdx.json").read_text()))
    assert fresh == committed, (f"sbom/{image}.cdx.json drifted from a fresh build: regenerate it "
                                "(docs/supply-chain.md, Build)")


def test_control_plane_entrypoint_runs_as_nonroot_from_the_unpacked_rootfs_and_answers_healthz(control_plane, tmp_path):
    tmp, _, _, first = control_plane
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{tmp/'a'}:v0", str(bundle)], check=True, capture_output=True)
    config = json.loads((bundle / "config.json").read_text())["process"]
    assert (config["user"]["uid"], config["user"]["gid"]) == (65532, 65532)
    rootfs = bundle / "rootfs"
    assert not (rootfs / "bin/sh").exists() and not (rootfs / "usr/bin/sh").exists()
    if os.geteuid() != 0 or not shutil.which("chroot"):
        pytest.fail("running the entrypoint needs root for chroot --userspec (CI runs as root)")
    nats_port, api_port = _free_port(), _free_port()
    nats = subprocess.Popen([str(Path(sys.executable).parent / "nats-server"), "-js", "-sd", str(tmp_path / "js"),
                             "-a", "127.0.0.1", "-p", str(nats_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the image's own Entrypoint + Cmd and Env, under its own numeric user, inside its root fs
    argv = config["args"] + ["--nats", f"nats://127.0.0.1:{nats_port}", "--state-dir", "/home/nonroot/state",
                             "--insecure-http", "--port", str(api_port)]
    env = dict(item.split("=", 1) for item in config["env"])
    api = subprocess.Popen([shutil.which("chroot"), "--userspec=65532:65532", str(rootfs), *argv], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        for _ in range(120):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=1).read()
                break
            except OSError:
                if api.poll() is not None:
                    break
                time.sleep(0.25)
        assert body == b"ok", api.stdout.read() if api.poll() is not None else "no answer"
        uid = (Path("/proc") / str(api.pid) / "status").read_text()
        assert any(line.split()[:2] == ["Uid:", "65532"] for line in uid.splitlines())
    finally:
        api.terminate()
        nats.terminate()
        api.wait(10)
        nats.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_signed_control_plane_image_verifies_end_to_end(control_plane):
    """The real image through the same sign -> verify path as releases (throw-away sigstore root)."""
    from sc_sigstore import TestInstance, identity_token
    from supplychain.provenance import compute_provenance
    from supplychain.sbom import SBOM_MEDIA_TYPE
    from supplychain.signing import apply_sign_image, open_sigstore_signer
    from supplychain.verify import VerifyRequest, check_all

    tmp, spec, _, build = control_plane
    identity = "https://github.com/kubevirt-py/kubevirt-py/.github/workflows/release.yml@refs/tags/v0"
    issuer = "https://token.actions.githubusercontent.com"
    builder = "https://github.com/kubevirt-py/kubevirt-py/.github/workflows/release.yml"
    instance = TestInstance()
    sbom_text = compute_sbom(build, "debian", 1_700_000_000)
    sbom = json.loads(sbom_text)
    build.layout.apply_referrer(build.descriptor, SBOM_MEDIA_TYPE, sbom_text.encode(), SBOM_MEDIA_TYPE)
    prov = compute_provenance(build, builder, "https://github.com/kubevirt-py/kubevirt-py", "0" * 40, 1_700_000_000)
    with open_sigstore_signer(instance.signing_context(), identity_token(identity, issuer)) as signer:
        apply_sign_image(build.layout, "v0", "registry.example/kubevirt-py/control-plane", signer, sbom, prov)
    lines = list(check_all(VerifyRequest(tmp / "a", "v0", instance.apply_trusted_root(tmp / "root.json"),
                                         identity, issuer, LOCK, "control-plane", None, (builder,), spec,
                                         strict=False)))
    assert [line.split(":")[0] for line in lines] == ["ok layout", "ok signature", "ok sbom", "ok provenance", "ok policy"]
    assert f"{len(build.packages)} deb packages == lock target control-plane" in lines[2]


@pytest.fixture(scope="module")
def handler(control_plane):
    """The handler image from the committed locks and the same project wheel."""
    tmp, _, wheels, _ = control_plane
    return apply_build(ROOT / "build" / "images" / "handler.yaml", tmp / "handler", "v0", Cache(CACHE), wheels,
                       1_700_000_000)


def test_handler_image_runs_as_qemu_107_and_drives_libvirt(control_plane, handler, tmp_path):
    """The handler image: Debian's libvirt client + python3-libvirt, the project's wheel, uid 107."""
    build = handler
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{control_plane[0] / 'handler'}:v0", str(bundle)], check=True,
                   capture_output=True)
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (107, 107)
    assert process["args"][:3] == ["/usr/bin/python3.11", "-m", "services.virt_handler.main"]
    if os.geteuid() != 0 or not shutil.which("chroot"):
        pytest.fail("running the image needs root for chroot --userspec (CI runs as root)")
    env = dict(item.split("=", 1) for item in process["env"])
    code = ("import os, libvirt, services.virt_handler; c = libvirt.open('test:///default'); "
            "print(os.getuid(), [d.name() for d in c.listAllDomains()])")
    out = subprocess.run([shutil.which("chroot"), "--userspec=107:107", str(bundle / "rootfs"),
                          "/usr/bin/python3.11", "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "107 ['test']", out.stderr
    assert any(p["name"] == "libvirt0" for p in build.packages)
