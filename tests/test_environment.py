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


def test_the_conformance_material_lies_beside_the_project():
    # Several suites parametrize over ../shared/conformance; without it they would collect no case
    # and pass silently, so its absence is a failure here.
    conformance = Path(__file__).resolve().parents[1].parent / "shared" / "conformance"
    examples = sorted((conformance / "kubevirt-examples").glob("*.yaml"))
    invalid = sorted((conformance / "invalid").glob("*.yaml"))
    assert len(examples) >= 10, f"{conformance}/kubevirt-examples: {len(examples)} manifests (the suites need them)"
    assert len(invalid) >= 10, f"{conformance}/invalid: {len(invalid)} manifests (the suites need them)"
