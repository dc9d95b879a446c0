"""The project's real images from the committed Debian lock: the InRelease -> Packages -> .deb
chain verifies with the pinned archive keys, the control-plane image builds reproducibly,
umoci shows the numeric non-root user and no /bin/sh, and its Python runs as that user from the
unpacked root file system. Needs deb.debian.org (allowed here) unless the cache is warm."""
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from supplychain.builder import apply_build
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.lockfile import check_lock_fresh, compute_target_packages, read_lock
from supplychain.packages import check_deb_chain
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


def test_control_plane_image_builds_reproducibly_runs_as_nonroot_without_shell(tmp_path):
    spec = ROOT / "build" / "images" / "control-plane.yaml"
    first = apply_build(spec, tmp_path / "a", "v0", Cache(CACHE), [], 1_700_000_000)
    second = apply_build(spec, tmp_path / "b", "v0", Cache(CACHE), [], 1_700_000_000)
    assert first.digest == second.digest
    sbom = json.loads(compute_sbom(first, "debian", 1_700_000_000))
    debs = {c["name"] for c in sbom["components"] if c["purl"].startswith("pkg:deb/debian/")}
    assert debs == {p["name"] for p in compute_target_packages(read_lock(LOCK), "control-plane")}
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path/'a'}:v0", str(bundle)],
                   check=True, capture_output=True)
    user = json.loads((bundle / "config.json").read_text())["process"]["user"]
    assert (user["uid"], user["gid"]) == (65532, 65532)
    rootfs = bundle / "rootfs"
    assert not (rootfs / "bin/sh").exists() and not (rootfs / "usr/bin/sh").exists()
    if os.geteuid() != 0 or not shutil.which("chroot"):
        pytest.skip("running the entrypoint needs root for chroot --userspec")
    out = subprocess.run(["chroot", "--userspec=65532:65532", str(rootfs), "/usr/bin/python3.11", "-c",
                          "import os, ssl, asyncio; print(os.getuid(), os.getgid())"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["65532", "65532"], out.stderr
