"""A claim's ``disk.img`` is opened in the format its first bytes say: the local provisioner makes
qcow2, older claims are raw; ``--pvc-root`` decides where claims live."""

from __future__ import annotations

import subprocess

import pytest

from services.virt_handler.domain import compute_domain_xml
from services.virt_handler.domain.volumes import pvc_disk_format
from services.virt_handler.vmi_files import VmiFiles

from test_domain_configurators import convert, with_disk


def make_claim(root, namespace, claim, fmt):
    disk = root / namespace / claim / "disk.img"
    disk.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    else:
        disk.write_bytes(b"\0" * 4096)
    return disk


@pytest.mark.parametrize("source, fmt", [
    pytest.param({"persistentVolumeClaim": {"claimName": "c-qcow2"}}, "qcow2", id="pvc-qcow2"),
    pytest.param({"persistentVolumeClaim": {"claimName": "c-raw"}}, "raw", id="pvc-raw"),
    pytest.param({"dataVolume": {"name": "dv-qcow2"}}, "qcow2", id="datavolume-qcow2"),
])
def test_claim_disk_driver_type_follows_the_file(source, fmt, make_vmi, make_ctx, tmp_path):
    claim = source.get("persistentVolumeClaim", {}).get("claimName") or source["dataVolume"]["name"]
    disk = make_claim(tmp_path / "pvcs", "default", claim, fmt)
    root = convert(make_vmi(with_disk("data", bus="virtio", volume=source)),
                   make_ctx(domain_type="qemu", pvc_root=tmp_path / "pvcs"))
    element = root.find("devices/disk")
    assert element.find("source").get("file") == str(disk)
    assert element.find("driver").get("type") == fmt


def test_ephemeral_overlay_names_the_claims_format_as_backing(make_vmi, make_ctx, tmp_path):
    make_claim(tmp_path / "pvcs", "default", "base", "qcow2")
    vmi = make_vmi(with_disk("v", bus="virtio", volume={"ephemeral": {"persistentVolumeClaim": {"claimName": "base"}}}))
    from services.virt_handler.domain.volumes import compute_volume_plans
    plan, = compute_volume_plans(vmi, make_ctx(domain_type="qemu", pvc_root=tmp_path / "pvcs"))
    assert (plan.format, plan.backing_format) == ("qcow2", "qcow2")


@pytest.mark.parametrize("content, expected", [
    pytest.param(b"QFI\xfb\0\0\0\3", "qcow2", id="qcow2-magic"),
    pytest.param(b"\0" * 8, "raw", id="zeros"),
    pytest.param(None, "raw", id="missing-file"),
])
def test_pvc_disk_format(content, expected, tmp_path):
    path = tmp_path / "disk.img"
    if content is not None:
        path.write_bytes(content)
    assert pvc_disk_format(path) == expected


def test_vmi_files_pass_the_pvc_root_to_the_conversion(make_vmi, tmp_path):
    disk = make_claim(tmp_path / "claims", "default", "data", "qcow2")
    files = VmiFiles(tmp_path / "state", "qemu", pvc_root=tmp_path / "claims")
    ctx = files.context("u1")
    assert ctx.pvc_root == tmp_path / "claims"
    xml = compute_domain_xml(make_vmi(with_disk("data", bus="virtio",
                                                volume={"persistentVolumeClaim": {"claimName": "data"}})), ctx)
    assert f"file=\"{disk}\"" in xml and 'type="qcow2"' in xml
