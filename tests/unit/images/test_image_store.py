"""The local OCI image store: import disks and kernels, resolve references, report missing images."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from shared.images import ImageFileNotFound, ImageNotFound, ImageStore, normalize_ref

QCOW2 = b"QFI\xfb" + b"\0" * 60


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "cirros.qcow2").write_bytes(QCOW2)
    (d / "raw.img").write_bytes(b"\0" * 1024)
    (d / "vmlinuz").write_bytes(b"kernel-bytes")
    (d / "initrd").write_bytes(b"initrd-bytes")
    return d


@pytest.mark.parametrize(("ref", "expected"), [
    pytest.param("cirros", "cirros:latest", id="bare-name"),
    pytest.param("registry:5000/kubevirt/cirros", "registry:5000/kubevirt/cirros:latest", id="port-is-not-a-tag"),
    pytest.param("quay.io/kubevirt/cirros-container-disk-demo:v1", "quay.io/kubevirt/cirros-container-disk-demo:v1",
                 id="tagged"),
    pytest.param("example.org/x@sha256:" + "a" * 64, "example.org/x@sha256:" + "a" * 64, id="digest"),
])
def test_normalize_ref(ref, expected):
    assert normalize_ref(ref) == expected


@pytest.mark.parametrize(("name", "fmt"), [pytest.param("cirros.qcow2", "qcow2", id="qcow2"),
                                           pytest.param("raw.img", "raw", id="raw")])
def test_import_disk_is_an_oci_image_with_the_disk_under_slash_disk(name, fmt, files, tmp_path):
    store = ImageStore(tmp_path / "images")
    image = store.import_disk("quay.io/kubevirt/cirros-container-disk-demo:latest", files / name)
    assert image.disk.read_bytes() == (files / name).read_bytes()
    assert image.disk.relative_to(image.root).as_posix() == f"disk/{name}"
    assert image.disk_format == fmt and image.kernel is None
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == image.ref
    assert json.loads((tmp_path / "images" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    manifest = json.loads((tmp_path / "images" / "blobs" / "sha256" / image.digest[7:]).read_text())
    with tarfile.open(tmp_path / "images" / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]) as tar:
        assert f"disk/{name}" in tar.getnames()


def test_import_kernel_places_files_at_the_given_paths(files, tmp_path):
    store = ImageStore(tmp_path / "images")
    image = store.import_kernel("registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel", files / "vmlinuz",
                                files / "initrd", kernel_path="/boot/vmlinuz-virt", initrd_path="/boot/initramfs-virt",
                                cmdline="console=ttyS0")
    assert image.path("/boot/vmlinuz-virt").read_bytes() == b"kernel-bytes"
    assert image.kernel == image.path("/boot/vmlinuz-virt") and image.initrd == image.path("/boot/initramfs-virt")
    assert image.cmdline == "console=ttyS0" and image.disk is None


def test_disk_with_kernel_metadata(files, tmp_path):
    image = ImageStore(tmp_path / "images").import_disk("demo", files / "cirros.qcow2", kernel=files / "vmlinuz",
                                                        initrd=files / "initrd", cmdline="console=ttyS0 quiet")
    assert (image.kernel.read_bytes(), image.initrd.read_bytes(), image.cmdline) == (
        b"kernel-bytes", b"initrd-bytes", "console=ttyS0 quiet")


def test_missing_image_raises_image_not_found(tmp_path):
    with pytest.raises(ImageNotFound) as err:
        ImageStore(tmp_path / "images").resolve("example.org/nothing:1")
    assert err.value.ref == "example.org/nothing:1" and "not found in the local image store" in str(err.value)


def test_missing_file_in_an_image(files, tmp_path):
    image = ImageStore(tmp_path / "images").import_disk("demo", files / "raw.img")
    with pytest.raises(ImageFileNotFound):
        image.path("/boot/vmlinuz")
    with pytest.raises(ImageFileNotFound):
        image.path("/../../etc/passwd")


def test_reimport_replaces_the_reference_and_same_content_shares_blobs(files, tmp_path):
    store = ImageStore(tmp_path / "images")
    first = store.import_disk("a", files / "raw.img")
    store.import_disk("b", files / "raw.img")
    assert store.resolve("b").root == first.root  # same layer
    replaced = store.import_disk("a", files / "cirros.qcow2")
    assert replaced.disk_format == "qcow2" and store.list_refs() == ["a:latest", "b:latest"]
    assert store.remove("a") and not store.is_present("a") and store.is_present("b")
    assert not store.remove("a")


def test_unpacked_tree_is_rebuilt_from_the_layer_blob(files, tmp_path):
    store = ImageStore(tmp_path / "images")
    image = store.import_disk("demo", files / "cirros.qcow2")
    shutil.rmtree(image.root)
    again = store.resolve("demo")
    assert again.disk.read_bytes() == QCOW2 and again.disk_format == "qcow2"


def test_files_are_readable_by_the_qemu_user(files, tmp_path):
    image = ImageStore(tmp_path / "images").import_disk("demo", files / "cirros.qcow2")
    assert image.disk.stat().st_mode & 0o004 and image.disk.parent.stat().st_mode & 0o005 == 0o005


def test_import_of_a_missing_file_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.qcow2 is not a file"):
        ImageStore(tmp_path / "images").import_disk("demo", tmp_path / "nope.qcow2")
