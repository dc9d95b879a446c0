"""A local OCI image-layout store for containerDisk and kernelBoot images.

Owns: importing a qcow2/raw disk or a kernel + initrd from files as an OCI image
(one uncompressed tar layer, laid out as KubeVirt's container images are: the disk
under ``/disk/``, kernels wherever ``kernelPath``/``initrdPath`` say), naming it by
a reference such as ``quay.io/kubevirt/cirros-container-disk-demo:latest``, and
resolving a reference back to local file paths.

Layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)::

    <root>/oci-layout, index.json, blobs/sha256/<hex>
    <root>/rootfs/<layer-hex>/...      the unpacked layer QEMU reads (backing files)

``index.json`` names each manifest with the full reference in the annotation
``org.opencontainers.image.ref.name``. The image config carries kubevirt-py labels
(:data:`LABEL_DISK`, ...) recording where the disk/kernel/initrd are and a default
kernel command line, so a containerDisk built from a kernel + initramfs can boot
by direct kernel boot (see docs/domain-conversion.md).

Deliberately elsewhere: pulling from registries (no network here: a missing image
raises :class:`ImageNotFound`, which the handler reports as ``ErrImagePull`` and
then ``ImagePullBackOff``, as KubeVirt does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

LABEL_DISK = "io.kubevirt-py.disk"
LABEL_DISK_FORMAT = "io.kubevirt-py.disk-format"
LABEL_KERNEL = "io.kubevirt-py.kernel"
LABEL_INITRD = "io.kubevirt-py.initrd"
LABEL_CMDLINE = "io.kubevirt-py.cmdline"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
QCOW2_MAGIC = b"QFI\xfb"


class ImageNotFound(LookupError):
    """No image with this reference is in the local store (KubeVirt: ``ErrImagePull``)."""

    def __init__(self, ref: str, message: str | None = None) -> None:
        self.ref = ref
        self.message = message or f"image {ref!r} not found in the local image store"
        super().__init__(self.message)


class ImageFileNotFound(ImageNotFound):
    """The image exists but has no file at the requested path (e.g. a wrong ``kernelPath``)."""


@dataclass(frozen=True)
class ResolvedImage:
    """Local files of one stored image.

    ``disk`` is the containerDisk file (first file under ``/disk/`` unless labelled),
    ``disk_format`` ``"qcow2"`` or ``"raw"`` (detected from the file's magic),
    ``kernel``/``initrd``/``cmdline`` the boot metadata recorded at import (None when absent).
    """

    ref: str
    digest: str
    root: Path
    disk: Path | None
    disk_format: str | None
    kernel: Path | None
    initrd: Path | None
    cmdline: str | None

    def path(self, inner: str) -> Path:
        """The local path of ``inner`` (an absolute path inside the image); raises ImageFileNotFound."""
        rel = PurePosixPath("/", inner).relative_to("/")
        if ".." in rel.parts:
            raise ImageFileNotFound(self.ref, f"path {inner!r} escapes image {self.ref!r}")
        local = self.root / rel
        if not local.is_file():
            raise ImageFileNotFound(self.ref, f"image {self.ref!r} has no file {inner}")
        return local


def normalize_ref(ref: str) -> str:
    """A reference with an explicit tag: ``name`` -> ``name:latest``; digests and tags are kept."""
    ref = ref.strip()
    if not ref:
        raise ValueError("empty image reference")
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref or ":" in last:
        return ref
    return ref + ":latest"


def detect_disk_format(path: Path) -> str:
    """``"qcow2"`` when the file starts with QEMU's qcow magic, else ``"raw"``."""
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


class ImageStore:
    """The image store rooted at ``root`` (created on first use, e.g. ``<state>/images``).

    All files are world-readable and directories traversable, because QEMU runs as
    ``libvirt-qemu`` and reads containerDisk files as backing files.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- layout helpers --------------------------------------------------------------------
    def _ensure_layout(self) -> None:
        for d in (self.root, self.root / "blobs" / "sha256", self.root / "rootfs"):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        layout = self.root / "oci-layout"
        if not layout.exists():
            layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_json(self.root / "index.json", {"schemaVersion": 2, "manifests": []})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_layout()
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _write_json(path: Path, obj: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        tmp.chmod(0o644)
        os.replace(tmp, path)

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _put_blob(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._blob(digest)
        if not path.exists():
            path.write_bytes(data)
            path.chmod(0o644)
        return digest, len(data)

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "manifests": []}
        index: dict[str, Any] = json.loads(path.read_text())
        return index

    # --- import ----------------------------------------------------------------------------
    def _import(self, ref: str, files: dict[str, Path], labels: dict[str, str]) -> ResolvedImage:
        """Store ``files`` (image path -> local file) as a one-layer image named ``ref``."""
        ref = normalize_ref(ref)
        _require_files(ref, files.values())
        with self._locked():
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".import-"))
            try:
                tree = staging / "tree"
                for inner, local in sorted(files.items()):
                    target = tree / PurePosixPath(inner).relative_to("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(local, target)
                    target.chmod(0o644)
                for d in [tree, *[p for p in tree.rglob("*") if p.is_dir()]]:
                    d.chmod(0o755)
                layer_tmp = staging / "layer.tar"
                with tarfile.open(layer_tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                    for path in sorted(tree.rglob("*")):
                        info = tar.gettarinfo(path, arcname=str(path.relative_to(tree)))
                        info.uid = info.gid = 0
                        info.uname = info.gname = "root"
                        info.mtime = 0  # same content -> same digest
                        if path.is_file():
                            with open(path, "rb") as f:
                                tar.addfile(info, f)
                        else:
                            tar.addfile(info)
                layer_digest, layer_size = _hash_file(layer_tmp)
                layer_blob = self._blob(layer_digest)
                if not layer_blob.exists():
                    os.replace(layer_tmp, layer_blob)
                    layer_blob.chmod(0o644)
                rootfs = self.root / "rootfs" / layer_digest.removeprefix("sha256:")
                if not rootfs.exists():
                    try:
                        os.replace(tree, rootfs)
                    except OSError:
                        if not rootfs.exists():  # else a concurrent resolve() unpacked it first
                            raise
                config = {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": labels},
                    "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                }
                config_digest, config_size = self._put_blob(json.dumps(config, sort_keys=True).encode())
                manifest = {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_MANIFEST,
                    "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
                    "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
                }
                manifest_digest, manifest_size = self._put_blob(json.dumps(manifest, sort_keys=True).encode())
                index = self._read_index()
                index["manifests"] = [
                    m for m in index["manifests"] if m.get("annotations", {}).get(REF_ANNOTATION) != ref
                ] + [{
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {REF_ANNOTATION: ref},
                }]
                self._write_json(self.root / "index.json", index)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.resolve(ref)

    def import_disk(self, ref: str, disk: Path, *, kernel: Path | None = None, initrd: Path | None = None,
                    cmdline: str | None = None) -> ResolvedImage:
        """Store a qcow2 or raw disk file as containerDisk image ``ref`` (file at ``/disk/<name>``).

        With ``kernel`` (and optionally ``initrd``/``cmdline``) the image also carries boot
        metadata: a VMI using it as containerDisk without its own kernelBoot boots that kernel
        directly (kubevirt-py's arrangement for images without a bootloader). Re-importing a
        reference replaces it. Raises FileNotFoundError for a missing input file.
        """
        disk = Path(disk)
        _require_files(ref, [disk])
        files = {f"/disk/{disk.name}": disk}
        labels = {LABEL_DISK: f"/disk/{disk.name}", LABEL_DISK_FORMAT: detect_disk_format(disk)}
        if kernel is not None:
            files["/boot/vmlinuz"] = Path(kernel)
            labels[LABEL_KERNEL] = "/boot/vmlinuz"
        if initrd is not None:
            files["/boot/initrd.img"] = Path(initrd)
            labels[LABEL_INITRD] = "/boot/initrd.img"
        if cmdline is not None:
            labels[LABEL_CMDLINE] = cmdline
        return self._import(ref, files, labels)

    def import_kernel(self, ref: str, kernel: Path, initrd: Path | None = None, *,
                      kernel_path: str = "/boot/vmlinuz", initrd_path: str = "/boot/initrd.img",
                      cmdline: str | None = None) -> ResolvedImage:
        """Store a kernel (+ initrd) as a kernelBoot container image ``ref``.

        ``kernel_path``/``initrd_path`` are where the files sit inside the image; a VMI's
        ``firmware.kernelBoot.container.kernelPath``/``initrdPath`` must name them
        (e.g. ``/boot/vmlinuz-virt`` for KubeVirt's alpine kernel-boot example).
        """
        files = {kernel_path: Path(kernel)}
        labels = {LABEL_KERNEL: kernel_path}
        if initrd is not None:
            files[initrd_path] = Path(initrd)
            labels[LABEL_INITRD] = initrd_path
        if cmdline is not None:
            labels[LABEL_CMDLINE] = cmdline
        return self._import(ref, files, labels)

    # --- lookup ----------------------------------------------------------------------------
    def list_refs(self) -> list[str]:
        """All stored references, sorted."""
        return sorted(m.get("annotations", {}).get(REF_ANNOTATION, "") for m in self._read_index()["manifests"])

    def is_present(self, ref: str) -> bool:
        """True when ``ref`` resolves."""
        try:
            self.resolve(ref)
        except ImageNotFound:
            return False
        return True

    def resolve(self, ref: str) -> ResolvedImage:
        """Local paths of image ``ref``; raises :class:`ImageNotFound` when it is not stored."""
        ref = normalize_ref(ref)
        entry = next((m for m in self._read_index()["manifests"]
                      if m.get("annotations", {}).get(REF_ANNOTATION) == ref), None)
        if entry is None:
            raise ImageNotFound(ref)
        manifest = json.loads(self._blob(entry["digest"]).read_text())
        config = json.loads(self._blob(manifest["config"]["digest"]).read_text())
        labels = (config.get("config") or {}).get("Labels") or {}
        layer_digest = manifest["layers"][0]["digest"]
        root = self.root / "rootfs" / layer_digest.removeprefix("sha256:")
        if not root.exists():
            self._unpack(layer_digest, root)
        image = ResolvedImage(ref=ref, digest=entry["digest"], root=root, disk=None, disk_format=None,
                              kernel=None, initrd=None, cmdline=labels.get(LABEL_CMDLINE))
        disk = image.path(labels[LABEL_DISK]) if LABEL_DISK in labels else _first_file(root / "disk")
        return ResolvedImage(
            ref=ref, digest=entry["digest"], root=root,
            disk=disk,
            disk_format=labels.get(LABEL_DISK_FORMAT) or (detect_disk_format(disk) if disk else None),
            kernel=image.path(labels[LABEL_KERNEL]) if LABEL_KERNEL in labels else None,
            initrd=image.path(labels[LABEL_INITRD]) if LABEL_INITRD in labels else None,
            cmdline=labels.get(LABEL_CMDLINE),
        )

    def _unpack(self, layer_digest: str, root: Path) -> None:
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".unpack-"))
        with tarfile.open(self._blob(layer_digest)) as tar:
            tar.extractall(tmp, filter="data")
        tmp.chmod(0o755)
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process unpacked it first

    def remove(self, ref: str) -> bool:
        """Forget ``ref`` (blobs stay until :meth:`prune`); True when it was stored."""
        ref = normalize_ref(ref)
        with self._locked():
            index = self._read_index()
            kept = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_ANNOTATION) != ref]
            if len(kept) == len(index["manifests"]):
                return False
            index["manifests"] = kept
            self._write_json(self.root / "index.json", index)
            return True


def _require_files(ref: str, paths: Iterable[str | Path]) -> None:
    for local in paths:
        if not Path(local).is_file():
            raise FileNotFoundError(f"cannot import {ref}: {local} is not a file")


def _first_file(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    files = sorted(p for p in directory.iterdir() if p.is_file())
    return files[0] if files else None


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size
