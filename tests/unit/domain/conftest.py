"""Fixtures for the domain-conversion tests: a real image store with small stand-in images
under the names KubeVirt's examples use, a private libvirt test driver, VMI builders."""

from __future__ import annotations

import copy
import subprocess
import uuid
from pathlib import Path

import pytest

from services.virt_handler.domain import ConversionContext
from shared.images import ImageStore

# refs used by ../shared/conformance/kubevirt-examples and what stands in for them
DISK_IMAGES = (
    "registry:5000/kubevirt/cirros-container-disk-demo:devel",
    "registry:5000/kubevirt/alpine-container-disk-demo:devel",
    "registry:5000/kubevirt/fedora-with-test-tooling-container-disk:devel",
)
KERNEL_BOOT_IMAGE = "registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel"
DEMO_DISK_IMAGE = "kubevirt-py/demo-guest:latest"


@pytest.fixture(scope="session")
def state_root(tmp_path_factory) -> Path:
    """One state dir for the session (images are imported once; tests use distinct names)."""
    return tmp_path_factory.mktemp("domain-state")


@pytest.fixture(scope="session")
def image_store(state_root: Path) -> ImageStore:
    """Stand-in images: a 1 MiB qcow2 (made with qemu-img) as disk, text files as kernels. The demo-guest ref carries
    kernel metadata (kubevirt-py's kernel-with-containerDisk arrangement)."""
    files = state_root / "inputs"
    files.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(files / "disk.qcow2"), "1M"], check=True)
    (files / "vmlinuz").write_bytes(b"kernel")
    (files / "initrd").write_bytes(b"initrd")
    store = ImageStore(state_root / "images")
    for ref in DISK_IMAGES:
        store.import_disk(ref, files / "disk.qcow2")
    store.import_kernel(KERNEL_BOOT_IMAGE, files / "vmlinuz", files / "initrd",
                        kernel_path="/boot/vmlinuz-virt", initrd_path="/boot/initramfs-virt")
    store.import_disk(DEMO_DISK_IMAGE, files / "disk.qcow2", kernel=files / "vmlinuz", initrd=files / "initrd",
                      cmdline="console=ttyS0")
    return store


@pytest.fixture(scope="session")
def ovmf_dir(state_root: Path) -> Path:
    """Stand-in OVMF files (the test driver does not read firmware)."""
    d = state_root / "ovmf"
    d.mkdir()
    for name in ("OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF_CODE.secboot.fd", "OVMF_VARS.secboot.fd"):
        (d / name).write_bytes(b"fd")
    return d


@pytest.fixture
def make_ctx(state_root: Path, image_store: ImageStore, ovmf_dir: Path):
    """``make_ctx(**overrides)`` -> ConversionContext for the test driver with the stand-in store."""
    def make(**overrides) -> ConversionContext:
        values = dict(domain_type="test", vmi_dir=state_root / "vmis" / "default" / "testvmi", images=image_store,
                      pvc_root=state_root / "pvcs", ovmf_dirs=(ovmf_dir,))
        values.update(overrides)
        return ConversionContext(**values)
    return make


def _make_vmi(*, name: str = "testvmi", namespace: str = "default", memory: str = "128Mi") -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace,
                     "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}"))},
        "spec": {"domain": {"memory": {"guest": memory}, "devices": {}}, "volumes": []},
    }


@pytest.fixture
def make_vmi():
    """``make_vmi(*modifiers, **kw)``: a minimal VMI dict, each modifier a function editing it."""
    def make(*modifiers, **kw) -> dict:
        vmi = _make_vmi(**kw)
        for modify in modifiers:
            modify(vmi)
        return copy.deepcopy(vmi)
    return make


@pytest.fixture
def libvirt_test_conn(tmp_path: Path):
    """A private ``test:///<file>`` libvirt connection (empty node), closed afterwards."""
    import libvirt

    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    conn = libvirt.open(f"test://{node}")
    yield conn
    conn.close()
