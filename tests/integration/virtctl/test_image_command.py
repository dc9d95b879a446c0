"""virtctl image import / list against a real on-disk image store in a private state dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.virtctl import main as virtctl_main
from shared.images import ImageStore

QCOW2_HEADER = b"QFI\xfb" + b"\x00" * 508


@pytest.fixture()
def run(tmp_path: Path):
    virtctl_main._load_command_modules()
    state = tmp_path / "state"

    def invoke(*args: str):
        return CliRunner().invoke(virtctl_main.cli, [*args, "--state-dir", str(state)], obj={})

    invoke.state = state
    return invoke


def test_import_disk_then_kernel_then_list(run, tmp_path: Path) -> None:
    disk = tmp_path / "guest.qcow2"
    disk.write_bytes(QCOW2_HEADER)
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel-bytes")
    initrd.write_bytes(b"initrd-bytes")

    result = run("image", "import", "registry.local/demo:v1", "--disk", str(disk))
    assert result.exit_code == 0, result.output
    result = run("image", "import", "registry.local/boot", "--kernel", str(kernel), "--initrd", str(initrd),
                 "--cmdline", "console=ttyS0 quiet")
    assert result.exit_code == 0, result.output
    assert "registry.local/boot:latest" in result.output

    store = ImageStore(run.state / "images")
    demo = store.resolve("registry.local/demo:v1")
    assert demo.disk is not None and demo.disk.read_bytes() == QCOW2_HEADER
    assert demo.disk_format == "qcow2"
    boot = store.resolve("registry.local/boot:latest")
    assert boot.kernel.read_bytes() == b"kernel-bytes"
    assert boot.initrd.read_bytes() == b"initrd-bytes"
    assert boot.cmdline == "console=ttyS0 quiet"
    assert boot.disk is None

    listed = run("image", "list")
    assert listed.exit_code == 0
    assert listed.output.splitlines() == ["registry.local/boot:latest", "registry.local/demo:v1"]


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["BAD//ref", "--disk", "{disk}"], "'BAD//ref' is not an image reference (e.g. registry.local/demo:latest)",
                 id="bad-ref"),
    pytest.param(["registry.local/x", "--disk", "{missing}"], "--disk {missing}: no such file", id="missing-disk"),
    pytest.param(["registry.local/x", "--kernel", "{missing}"], "--kernel {missing}: no such file",
                 id="missing-kernel"),
    pytest.param(["registry.local/x"], "give --disk FILE or --kernel FILE", id="no-files"),
    pytest.param(["registry.local/x", "--disk", "{disk}", "--initrd", "{disk}"], "--initrd needs --kernel",
                 id="initrd-without-kernel"),
])
def test_bad_input_is_one_line_and_stores_nothing(run, tmp_path: Path, args: list[str], message: str) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"\x00" * 512)
    values = {"disk": str(disk), "missing": str(tmp_path / "nope.raw")}
    result = run("image", "import", *[a.format(**values) for a in args])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"virtctl: error: {message.format(**values)}"]
    assert run("image", "list").output == ""
