"""Disk preparation creates exactly the files the domain XML names; cleanup removes the VMI's own."""

from __future__ import annotations

import json
import subprocess

import pycdlib
import pytest
import yaml

from services.virt_handler.domain import apply_disk_preparation, cleanup, compute_domain_xml, is_direct_io_supported


def qemu_img_info(path):
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)


def read_iso(path) -> tuple[str, dict[str, bytes]]:
    import io
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for dirname, _, filenames in iso.walk(rr_path="/"):
            for f in filenames:
                rr = f"{dirname.rstrip('/')}/{f}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=rr)
                files[rr.lstrip("/")] = buf.getvalue()
        return label, files
    finally:
        iso.close()


@pytest.fixture
def vmi_with_everything(make_vmi, tmp_path):
    host_disk = tmp_path / "host" / "disk.img"

    def modify(vmi):
        vmi["spec"]["hostname"] = "myhost"
        vmi["spec"]["domain"]["devices"]["disks"] = [{"name": n, "disk": {"bus": "virtio"}} for n in
                                                     ("root", "scratch", "host", "ci", "cd")]
        vmi["spec"]["volumes"] = [
            {"name": "root", "containerDisk": {"image": "registry:5000/kubevirt/cirros-container-disk-demo:devel"}},
            {"name": "scratch", "emptyDisk": {"capacity": "2Gi"}},
            {"name": "host", "hostDisk": {"path": str(host_disk), "type": "DiskOrCreate", "capacity": "64Mi"}},
            {"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: x\n",
                                                "networkData": "version: 2\n"}},
            {"name": "cd", "cloudInitConfigDrive": {"userDataBase64": "I2Nsb3VkLWNvbmZpZw=="}},
        ]
    return make_vmi(modify), host_disk


def test_preparation_makes_every_file_and_cleanup_removes_the_owned_ones(vmi_with_everything, make_ctx, tmp_path,
                                                                          image_store):
    vmi, host_disk = vmi_with_everything
    ctx = make_ctx(vmi_dir=tmp_path / "vmi")
    apply_disk_preparation(vmi, ctx)
    xml = compute_domain_xml(vmi, ctx)

    overlay = qemu_img_info(ctx.vmi_dir / "disk-root.qcow2")
    base = image_store.resolve("registry:5000/kubevirt/cirros-container-disk-demo:devel").disk
    assert overlay["format"] == "qcow2" and overlay["backing-filename"] == str(base)
    assert overlay["backing-filename-format"] == "qcow2"
    empty = qemu_img_info(ctx.vmi_dir / "empty-scratch.qcow2")
    assert (empty["format"], empty["virtual-size"]) == ("qcow2", 2 * 2**30)
    assert host_disk.stat().st_size == 64 * 2**20

    label, files = read_iso(ctx.vmi_dir / "noCloud.iso")
    assert label == "cidata"
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "testvmi.default", "local-hostname": "myhost"}
    assert files["user-data"] == b"#cloud-config\npassword: x\n" and files["network-config"] == b"version: 2\n"
    label, files = read_iso(ctx.vmi_dir / "configdrive.iso")
    assert label == "config-2"
    assert files["openstack/latest/user_data"] == b"#cloud-config"
    assert json.loads(files["openstack/latest/meta_data.json"])["hostname"] == "myhost"
    for path in ("disk-root.qcow2", "empty-scratch.qcow2", "noCloud.iso", "configdrive.iso"):
        assert str(ctx.vmi_dir / path) in xml

    apply_disk_preparation(vmi, ctx)  # idempotent: a restarted handler keeps the overlay
    cleanup(vmi, ctx)
    assert not ctx.vmi_dir.exists()
    assert host_disk.exists()  # hostDisk data is the user's


def test_cleanup_without_the_image_still_removes_overlays(make_vmi, make_ctx, tmp_path):
    ctx = make_ctx(vmi_dir=tmp_path / "vmi")
    ctx.vmi_dir.mkdir()
    for name in ("disk-root.qcow2", "noCloud.iso", "console.log"):
        (ctx.vmi_dir / name).write_bytes(b"x")
    vmi = make_vmi(lambda v: v["spec"]["volumes"].append({"name": "root", "containerDisk": {"image": "gone:1"}}))
    cleanup(vmi, ctx)
    assert not ctx.vmi_dir.exists()


def test_direct_io_probe(tmp_path):
    assert isinstance(is_direct_io_supported(tmp_path), bool)
    assert is_direct_io_supported(tmp_path / "missing-dir") is False
    assert list(tmp_path.iterdir()) == []


def test_a_vmi_dir_qemu_cannot_reach_is_reported(make_vmi, make_ctx, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    ctx = make_ctx(domain_type="qemu", vmi_dir=private / "vmi")
    with pytest.raises(Exception) as err:
        apply_disk_preparation(make_vmi(), ctx)
    assert err.value.reason == "DiskPreparationFailed" and str(private) in err.value.message


def test_untraversable_ancestor_detection(tmp_path):
    from services.virt_handler.domain.preparation import compute_untraversable
    open_dir = tmp_path / "open" / "deeper"
    open_dir.mkdir(parents=True)
    assert compute_untraversable(open_dir / "file") in (None, *open_dir.parents)
    (tmp_path / "open").chmod(0o700)
    assert compute_untraversable(open_dir / "file") in (tmp_path / "open", *tmp_path.parents)
