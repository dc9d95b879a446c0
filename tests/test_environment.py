"""The installed environment provides the parts the project is built on."""
import shutil
import subprocess
import sys
from pathlib import Path


def test_nats_server_from_the_wheel_is_2_15_with_jetstream_features():
    binary = Path(sys.executable).parent / "nats-server"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith("nats-server: v2.15")


def test_libvirt_python_talks_to_the_test_driver():
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        assert [d.name() for d in conn.listAllDomains()] == ["test"]
    finally:
        conn.close()


def test_qemu_system_is_installed_for_tcg_guests():
    assert shutil.which("qemu-system-x86_64") is not None
