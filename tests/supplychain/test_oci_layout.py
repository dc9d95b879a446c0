"""OCI layout writer: reproducible layers and digests, readable by skopeo and umoci."""
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from supplychain.layer import DIR, FILE, HARDLINK, SYMLINK, LayerEntry, compute_layer
from supplychain.oci import ImageConfig, Layout, LayoutError

EPOCH = 1_700_000_000


def _build(root, extra=()):
    entries = [
        LayerEntry("usr/bin/hello", FILE, 0o755, data=b"#!not-a-shell\n"),
        LayerEntry("./etc//passwd", FILE, 0o644, data=b"root:x:0:0::/root:/sbin/nologin\n"),
        LayerEntry("home/app", DIR, 0o700, uid=65532, gid=65532),
        LayerEntry("usr/bin/hi", HARDLINK, link="usr/bin/hello"),
        LayerEntry("var/run", SYMLINK, 0o777, link="../run"),
        *extra,
    ]
    layer = compute_layer(entries, EPOCH, "files")
    layout = Layout(root)
    desc = layout.apply_image(ImageConfig(user="65532:65532", entrypoint=["/usr/bin/hello"],
                                          env={"PATH": "/usr/bin", "A": "1"}, created=EPOCH), [layer], {})
    layout.apply_tag(desc, "v1")
    return layout, desc


def test_two_builds_give_the_same_digest_whatever_the_umask(tmp_path):
    import supplychain.layer as layer_module
    _, first = _build(tmp_path / "a")
    layer_module._GZIP_MEMO.clear()  # compress again: gzip output itself must be deterministic
    old = os.umask(0o077)
    try:
        _, second = _build(tmp_path / "b")
    finally:
        os.umask(old)
    assert first["digest"] == second["digest"]
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_layer_entries_are_sorted_with_fixed_owner_and_time(tmp_path):
    layout, desc = _build(tmp_path / "a")
    [tar_bytes] = layout.read_layer_tars(desc)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["etc", "etc/passwd", "home", "home/app", "usr", "usr/bin", "usr/bin/hello",
                     "var", "var/run", "usr/bin/hi"]
    assert {m.mtime for m in members} == {EPOCH}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    home = members[names.index("home/app")]
    assert (home.uid, home.gid, home.mode) == (65532, 65532, 0o700)
    blob = layout.read_blob(json.loads(layout.read_blob(desc))["layers"][0])
    assert blob[4:8] == b"\0\0\0\0"  # gzip MTIME field


def test_config_has_numeric_user_sorted_env_and_diff_ids(tmp_path):
    layout, desc = _build(tmp_path / "a")
    assert layout.check_image(desc)[0].startswith("manifest sha256:")
    manifest = layout.read_json(desc)
    config = layout.read_json(manifest["config"])
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Env"] == ["A=1", "PATH=/usr/bin"]
    assert config["created"] == "2023-11-14T22:13:20Z"
    [tar_bytes] = layout.read_layer_tars(desc)
    import hashlib
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]


def test_a_changed_layer_blob_is_refused(tmp_path):
    layout, desc = _build(tmp_path / "a")
    layer = layout.read_json(desc)["layers"][0]
    path = layout.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LayoutError, match=f"blob {layer['digest']} content does not match"):
        layout.check_image(desc)


@pytest.mark.parametrize("path", [pytest.param("../etc/x", id="climbs-out"), pytest.param("/", id="root")])
def test_paths_outside_the_root_are_refused(path):
    with pytest.raises(ValueError, match="not inside the image root"):
        compute_layer([LayerEntry(path, FILE)], EPOCH, "x")


@pytest.mark.skipif(not shutil.which("skopeo") or not shutil.which("umoci"), reason="needs skopeo and umoci")
def test_skopeo_and_umoci_read_the_layout(tmp_path):
    _build(tmp_path / "img")
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci:{tmp_path/'img'}:v1"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["config"]["User"] == "65532:65532"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path/'img'}:v1", str(tmp_path / "bundle")],
                   capture_output=True, check=True)
    runtime = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert (runtime["process"]["user"]["uid"], runtime["process"]["user"]["gid"]) == (65532, 65532)
    assert (tmp_path / "bundle" / "rootfs" / "usr/bin/hello").read_bytes() == b"#!not-a-shell\n"
    assert os.readlink(tmp_path / "bundle" / "rootfs" / "var/run") == "../run"
