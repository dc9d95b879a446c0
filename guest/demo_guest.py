"""Build the kubevirt-py demo guest from Debian packages and import it into the image store.

Owns: :func:`apply_demo_guest_build` (download with ``apt-get download``, unpack with
``dpkg-deb -x``, assemble a busybox initramfs with the cloud kernel's virtio/ACPI modules
and ``qemu-ga`` plus its libraries, a small ext4 qcow2 disk) and
:func:`apply_demo_guest_import` (store it as a containerDisk carrying kernel metadata and
as a kernelBoot image, under kubevirt-py's names and optionally the names KubeVirt's
examples use).

The guest: Debian's ``linux-image-*-cloud-amd64`` kernel, ``/init`` from ``guest/init.sh``
(banner "kubevirt-py demo guest" + kernel version on the serial console, DHCP with udhcpc,
``qemu-ga`` on ``org.qemu.guest_agent.0``, busybox ``acpid`` powering off on the ACPI power
button, a shell on the console). Data disks: each virtio disk with a ``serial`` (KubeVirt's
``disks[].serial``, e.g. a PVC) is mounted at ``/data/<serial>`` (formatted with busybox
``mke2fs`` first when blank); ``qemu-ga``'s ``guest-fsfreeze-freeze`` freezes it, and its fsfreeze
hook (``guest/fsfreeze-hook.sh``) logs ``fsfreeze-hook: freeze`` / ``thaw`` to the guest's syslog
(``logread``). Facts: ../shared/docs/feasibility-on-this-machine.md §4.

Everything is cached under ``<state>/guest-build``: packages are downloaded once and the
outputs are rebuilt only when the inputs (package versions, files in ``guest/``) change.
Run: ``python -m guest.demo_guest [--state-dir DIR] [--import]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
AGENT_PACKAGE = "qemu-guest-agent"
BUSYBOX_PACKAGE = "busybox-static"
# no_timer_check: under TCG on a busy host the IO-APIC timer check can fail and panic the
# kernel ("IO-APIC + timer doesn't work!"), seen with 10 concurrent guests on 2 cores
DEFAULT_CMDLINE = "console=ttyS0 quiet no_timer_check"
DISK_SIZE = "64M"

# modules loaded by /init (dependencies are added from modules.dep, built-ins skipped)
WANTED_MODULES = (
    "virtio_pci", "virtio_console", "virtio_blk", "virtio_net", "virtio_rng", "virtio_balloon",
    "virtio_scsi", "ahci", "sd_mod", "sr_mod", "isofs", "ext4", "evdev", "button",
)

DEMO_DISK_REF = "kubevirt-py/demo-guest:latest"
DEMO_KERNEL_REF = "kubevirt-py/demo-guest-kernel:latest"
# names the KubeVirt examples in ../shared/conformance/kubevirt-examples use
CONFORMANCE_DISK_REFS = (
    "registry:5000/kubevirt/cirros-container-disk-demo:devel",
    "registry:5000/kubevirt/alpine-container-disk-demo:devel",
    "registry:5000/kubevirt/fedora-with-test-tooling-container-disk:devel",
    "quay.io/kubevirt/cirros-container-disk-demo:latest",
)
CONFORMANCE_KERNEL_REFS = (
    ("registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel", "/boot/vmlinuz-virt", "/boot/initramfs-virt"),
)


class GuestBuildError(RuntimeError):
    """A step of the build failed; the message names the command and its error output."""


@dataclass(frozen=True)
class DemoGuest:
    """Build outputs: ``kernel`` (vmlinuz), ``initramfs`` (gzip cpio), ``disk`` (qcow2 with an
    ext4 filesystem), ``kernel_version`` (e.g. ``6.1.0-57-cloud-amd64``), ``cmdline``."""

    kernel: Path
    initramfs: Path
    disk: Path
    kernel_version: str
    cmdline: str


def _run(*args: str, cwd: Path | None = None, timeout: float = 600, input_bytes: bytes | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, timeout=timeout, input=input_bytes)
    if result.returncode != 0:
        raise GuestBuildError(f"{' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace")


def compute_kernel_package() -> str:
    """The versioned kernel package ``linux-image-cloud-amd64`` depends on (``apt-cache depends``)."""
    out = _run("apt-cache", "depends", KERNEL_META_PACKAGE)
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", out)
    if not match:
        raise GuestBuildError(f"cannot find the kernel package in: apt-cache depends {KERNEL_META_PACKAGE}")
    return match.group(1)


def _candidate_version(package: str) -> str:
    out = _run("apt-cache", "policy", package)
    match = re.search(r"Candidate:\s*(\S+)", out)
    if not match or match.group(1) == "(none)":
        raise GuestBuildError(f"no installable version of {package} (apt-get update needed?)")
    return match.group(1)


def apply_download(packages: list[str], debs: Path) -> dict[str, Path]:
    """``apt-get download`` each package not yet in ``debs``; returns package -> .deb path."""
    debs.mkdir(parents=True, exist_ok=True)
    result = {}
    for package in packages:
        version = _candidate_version(package)
        pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
        found = sorted(debs.glob(pattern))
        if not found:  # download privately, then rename: concurrent runs share this cache
            with tempfile.TemporaryDirectory(prefix=".download.", dir=debs) as private:
                _run("apt-get", "download", "-q", f"{package}={version}", cwd=Path(private))
                for deb in Path(private).glob(pattern):
                    os.replace(deb, debs / deb.name)
            found = sorted(debs.glob(pattern))
        if not found:
            raise GuestBuildError(f"apt-get download {package} produced no {pattern}")
        result[package] = found[0]
    return result


def _is_extracted(target: Path) -> bool:
    """True when ``target`` holds a complete extraction: its ``.done`` marker names the
    top-level entries, and each of them is there."""
    try:
        entries = (target / ".done").read_text().split()
    except OSError:
        return False
    return bool(entries) and all((target / name).exists() for name in entries)


def _extract(deb: Path, target: Path) -> Path:
    """``deb`` unpacked at ``target`` (``dpkg-deb -x``), reused when already complete. The
    extraction happens in a private directory renamed into place when finished, so builds
    running at the same time (several test runs share the cache) never see, or remove, a
    half-written tree."""
    if _is_extracted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        _run("dpkg-deb", "-x", str(deb), str(staging))
        (staging / ".done").write_text("\n".join(sorted(p.name for p in staging.iterdir())) + "\n")
        if not _is_extracted(target):
            shutil.rmtree(target, ignore_errors=True)  # incomplete or from an older build
            try:
                os.rename(staging, target)
            except OSError:
                if not _is_extracted(target):  # not another build finishing first
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _module_depends(ko: Path) -> list[str]:
    """Names in the ``depends=`` entry of a module's ``.modinfo`` strings (what ``depmod`` reads;
    Debian runs depmod in the kernel package's postinst, so the unpacked package has no modules.dep)."""
    data = ko.read_bytes()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + len(b"\0depends="):data.index(b"\0", at + 1)].decode()
    return [d for d in value.split(",") if d]


def compute_module_closure(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module paths (relative to ``modules_dir``) to ``insmod`` in dependency order (deps first);
    modules the kernel lacks or has built in are skipped."""
    by_name = {p.name.split(".ko")[0].replace("-", "_"): p for p in (modules_dir / "kernel").rglob("*.ko")}
    order: list[str] = []

    def visit(name: str) -> None:
        ko = by_name.get(name.replace("-", "_"))
        if ko is None:
            return
        rel = str(ko.relative_to(modules_dir))
        if rel in order:
            return
        for dep in _module_depends(ko):
            visit(dep)
        order.append(rel)

    for name in wanted:
        visit(name)
    return order


def _library_files(binary: Path, lib_roots: list[Path]) -> dict[str, Path]:
    """``guest path -> file`` for the shared libraries ``binary`` needs (ldd names them; the
    files come from the unpacked Debian packages in ``lib_roots``)."""
    out = _run("ldd", str(binary))
    needed: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            guest_path = m.group(2) if m.lastindex == 2 else m.group(1)
            needed[Path(guest_path).name] = guest_path
    files = {}
    for soname, guest_path in needed.items():
        source = next((p for root in lib_roots for p in root.rglob(soname) if p.exists()), None)
        if source is None:
            raise GuestBuildError(f"{soname} (needed by {binary.name}) is in none of the downloaded packages")
        files[guest_path] = source.resolve()
    return files


def _packages_of_libraries(binary: Path) -> list[str]:
    """Debian packages owning the libraries ``ldd`` resolves for ``binary`` on this host."""
    packages = set()
    for line in _run("ldd", str(binary)).splitlines():
        m = re.match(r"\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(", line)
        if not m:
            continue
        owner = subprocess.run(["dpkg", "-S", Path(m.group(1)).name], capture_output=True, text=True)
        if owner.returncode == 0:
            packages.add(owner.stdout.split(":")[0].strip())
    return sorted(packages)


def _files_digest() -> str:
    h = hashlib.sha256()
    for name in ("init.sh", "udhcpc.script", "poweroff.sh", "profile", "os-release", "fsfreeze-hook.sh",
                 "demo_guest.py"):
        h.update((GUEST_DIR / name).read_bytes())
    return h.hexdigest()


def _inputs_digest(versions: dict[str, str]) -> str:
    h = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    h.update(_files_digest().encode())
    return h.hexdigest()[:16]


def _load(manifest: Path) -> DemoGuest:
    data = json.loads(manifest.read_text())
    return DemoGuest(**{k: Path(v) if k in ("kernel", "initramfs", "disk") else v for k, v in data.items()})


def apply_demo_guest_build(state_dir: Path, *, refresh: bool = False, log=None) -> DemoGuest:
    """Build (or reuse) the demo guest under ``<state_dir>/guest-build``.

    A second call with unchanged ``guest/`` files returns the cached outputs without asking
    apt (``refresh=True`` re-checks the package versions and rebuilds when they changed).
    Returns the :class:`DemoGuest` outputs. Needs root (``mknod`` for ``/dev/console``), the
    Debian tools ``apt-get``, ``dpkg-deb``, ``cpio``, ``gzip``, ``mkfs.ext4``, ``qemu-img``
    and access to the Debian archive on the first run. Raises :class:`GuestBuildError`.
    """
    say = log or (lambda msg: None)
    build = Path(state_dir) / "guest-build"
    build.mkdir(parents=True, exist_ok=True)
    current = build / "current.json"
    if not refresh and current.exists():
        # fast path without apt queries: same guest/ files as the last build, outputs still there
        pointer = json.loads(current.read_text())
        manifest = Path(pointer["manifest"])
        if pointer.get("files") == _files_digest() and manifest.exists():
            say(f"demo guest: cached in {manifest.parent}")
            return _load(manifest)
    kernel_pkg = compute_kernel_package()
    versions = {p: _candidate_version(p) for p in (kernel_pkg, AGENT_PACKAGE, BUSYBOX_PACKAGE)}
    out_dir = build / f"out-{_inputs_digest(versions)}"
    manifest = out_dir / "demo-guest.json"
    if manifest.exists():
        say(f"demo guest: cached in {out_dir}")
        current.write_text(json.dumps({"files": _files_digest(), "manifest": str(manifest)}))
        return _load(manifest)

    say(f"demo guest: downloading {', '.join(versions)}")
    debs = apply_download(list(versions), build / "debs")
    unpacked = {p: _extract(deb, build / "unpacked" / deb.stem) for p, deb in debs.items()}
    agent_binary = unpacked[AGENT_PACKAGE] / "usr" / "sbin" / "qemu-ga"
    lib_packages = _packages_of_libraries(agent_binary)
    lib_debs = apply_download(lib_packages, build / "debs")
    lib_roots = [_extract(deb, build / "unpacked" / deb.stem) for deb in lib_debs.values()]

    kernel_root = unpacked[kernel_pkg]
    kernel_version = kernel_pkg.removeprefix("linux-image-")
    modules_dir = kernel_root / "lib" / "modules" / kernel_version
    vmlinuz = kernel_root / "boot" / f"vmlinuz-{kernel_version}"

    staging = Path(tempfile.mkdtemp(dir=build, prefix=".staging-"))
    try:
        say("demo guest: assembling the initramfs")
        root = staging / "root"
        for d in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc/acpi/PWRF", "etc/qemu",
                  "lib/modules", "var"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(unpacked[BUSYBOX_PACKAGE] / "bin" / "busybox", root / "bin" / "busybox")
        for applet in ("sh", "mount", "insmod"):
            (root / "bin" / applet).symlink_to("busybox")
        os.mknod(root / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))
        shutil.copy2(agent_binary, root / "bin" / "qemu-ga")
        for guest_path, source in _library_files(agent_binary, lib_roots).items():
            target = root / guest_path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        module_list = compute_module_closure(modules_dir, WANTED_MODULES)
        for rel in module_list:
            shutil.copy2(modules_dir / rel, root / "lib" / "modules" / Path(rel).name)
        (root / "etc" / "modules").write_text("".join(Path(rel).name + "\n" for rel in module_list))
        for name, target, mode in (("init.sh", "init", 0o755), ("udhcpc.script", "etc/udhcpc.script", 0o755),
                                   ("poweroff.sh", "etc/acpi/PWRF/00000080", 0o755),
                                   ("profile", "etc/profile", 0o644), ("os-release", "etc/os-release", 0o644),
                                   ("fsfreeze-hook.sh", "etc/qemu/fsfreeze-hook", 0o755)):
            shutil.copyfile(GUEST_DIR / name, root / target)
            (root / target).chmod(mode)
        (root / "etc" / "hostname").write_text("demo-guest\n")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")

        out_tmp = staging / "out"
        out_tmp.mkdir()
        names = _run("find", ".", "-mindepth", "1", cwd=root).encode()
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root, input=names,
                              capture_output=True, timeout=120)
        if cpio.returncode != 0:
            raise GuestBuildError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
        gz = subprocess.run(["gzip", "-6", "-n"], input=cpio.stdout, capture_output=True, timeout=120)
        (out_tmp / "initramfs.gz").write_bytes(gz.stdout)
        shutil.copy2(vmlinuz, out_tmp / "vmlinuz")

        say("demo guest: making the data disk")
        data = staging / "data"
        data.mkdir()
        (data / "README").write_text("kubevirt-py demo guest data disk\n")
        raw = staging / "disk.raw"
        _run("mkfs.ext4", "-q", "-F", "-L", "demo-data", "-d", str(data), str(raw), DISK_SIZE)
        _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out_tmp / "disk.qcow2"))
        for f in out_tmp.iterdir():
            f.chmod(0o644)
        out_tmp.chmod(0o755)
        result = DemoGuest(kernel=out_dir / "vmlinuz", initramfs=out_dir / "initramfs.gz",
                           disk=out_dir / "disk.qcow2", kernel_version=kernel_version, cmdline=DEFAULT_CMDLINE)
        (out_tmp / "demo-guest.json").write_text(json.dumps({k: str(v) for k, v in asdict(result).items()}))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(out_tmp, out_dir)
        current.write_text(json.dumps({"files": _files_digest(), "manifest": str(manifest)}))
        for old in build.glob("out-*"):
            if old != out_dir:
                shutil.rmtree(old, ignore_errors=True)  # superseded builds
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"demo guest: built in {out_dir}")
    return result


def apply_demo_guest_import(store, guest: DemoGuest, *, conformance_names: bool = False) -> list[str]:
    """Import ``guest`` into ``store`` (a ``shared.images.ImageStore``); returns the refs.

    Always: :data:`DEMO_DISK_REF` (containerDisk with kernel metadata: boots by direct kernel
    boot) and :data:`DEMO_KERNEL_REF` (kernelBoot image, files at /boot/vmlinuz and
    /boot/initrd.img). With ``conformance_names`` also the image names of KubeVirt's examples.
    """
    refs = []
    disk_refs = (DEMO_DISK_REF, *(CONFORMANCE_DISK_REFS if conformance_names else ()))
    for ref in disk_refs:
        store.import_disk(ref, guest.disk, kernel=guest.kernel, initrd=guest.initramfs, cmdline=guest.cmdline)
        refs.append(ref)
    kernel_refs = ((DEMO_KERNEL_REF, "/boot/vmlinuz", "/boot/initrd.img"),
                   *(CONFORMANCE_KERNEL_REFS if conformance_names else ()))
    for ref, kernel_path, initrd_path in kernel_refs:
        store.import_kernel(ref, guest.kernel, guest.initramfs, kernel_path=kernel_path, initrd_path=initrd_path,
                            cmdline=guest.cmdline)
        refs.append(ref)
    return refs


def main(argv: list[str] | None = None) -> int:
    """CLI: build the demo guest and optionally import it into ``<state>/images``."""
    from shared.images import ImageStore, default_store_root

    parser = argparse.ArgumentParser(prog="python -m guest.demo_guest", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("KUBEVIRT_PY_STATE", "/var/lib/kubevirt-py")))
    parser.add_argument("--import", dest="do_import", action="store_true", help="import into the image store")
    parser.add_argument("--conformance-names", action="store_true",
                        help="also import under the image names of KubeVirt's examples")
    args = parser.parse_args(argv)
    try:
        guest = apply_demo_guest_build(args.state_dir, log=lambda m: print(m, file=sys.stderr))
    except GuestBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: str(v) for k, v in asdict(guest).items()}, indent=1))
    if args.do_import:
        store = ImageStore(default_store_root(args.state_dir))
        for ref in apply_demo_guest_import(store, guest, conformance_names=args.conformance_names):
            print(f"imported {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
