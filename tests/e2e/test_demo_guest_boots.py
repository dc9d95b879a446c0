"""The demo guest boots as a real QEMU guest from a converted VMI on qemu:///system.

Builds (or reuses, cached under ``$KUBEVIRT_PY_TEST_CACHE``) the demo guest, imports it into a
private image store, converts a VMI with the node's domain type (``kvm_probe``: TCG here),
prepares its disks, starts libvirtd/virtlogd if needed, then checks: banner and a shell
prompt on the serial console log, ``guest-ping`` through the guest agent, ACPI shutdown within
the grace period, and that nothing is left (domain undefined, VMI files removed).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

libvirt = pytest.importorskip("libvirt")
import libvirt_qemu  # noqa: E402  (ships with libvirt-python)

from guest.demo_guest import DEMO_DISK_REF, apply_demo_guest_build, apply_demo_guest_import  # noqa: E402
from services.virt_handler import kvm_probe  # noqa: E402
from services.virt_handler.domain import (CONSOLE_LOG, ConversionContext, apply_disk_preparation,  # noqa: E402
                                          cleanup, compute_domain_xml, domain_name)
from shared.images import ImageStore  # noqa: E402

CACHE = Path(__import__("os").environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
BOOT_TIMEOUT = 90
GRACE_SECONDS = 30
PROMPT = re.compile(rb"\[root@[\w.-]+ [^\]]*\]# ")

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None,
                                reason="QEMU/libvirtd not installed (scripts/install.sh installs them)")


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture(scope="module")
def demo_guest():
    CACHE.mkdir(parents=True, exist_ok=True)
    return apply_demo_guest_build(CACHE)


@pytest.fixture
def node_dir():
    """A private state dir QEMU (user libvirt-qemu) can traverse, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="kubevirt-py-e2e-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def system_libvirt(system_libvirtd):
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


def agent(domain, command: str, timeout: int = 5):
    return json.loads(libvirt_qemu.qemuAgentCommand(domain, json.dumps({"execute": command}), timeout, 0))


@needs_qemu
def test_demo_guest_boots_answers_the_agent_and_powers_off_on_acpi(demo_guest, node_dir, system_libvirt):
    store = ImageStore(node_dir / "images")
    apply_demo_guest_import(store, demo_guest)
    namespace, name = f"e2e-{uuid.uuid4().hex[:8]}", "demo"
    vmi = {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {
            "domain": {"memory": {"guest": "256Mi"},
                       "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                             {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                                   "rng": {}}},
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}},
                        {"name": "cloudinitdisk",
                         "cloudInitNoCloud": {"userData": "#!/bin/sh\necho 'printed from cloud-init userdata'\n"}}],
        },
    }
    ctx = ConversionContext(domain_type=kvm_probe.compute_domain_type(), vmi_dir=node_dir / "vmis" / namespace / name,
                            images=store)
    apply_disk_preparation(vmi, ctx)
    xml = compute_domain_xml(vmi, ctx)
    assert f"<domain xmlns:kubevirt=\"http://kubevirt.io\" type=\"{ctx.domain_type}\">" in xml

    conn = system_libvirt
    domain = conn.defineXML(xml)
    try:
        domain.create()
        assert domain.name() == domain_name(namespace, name)
        assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING

        log = ctx.vmi_dir / CONSOLE_LOG
        console = wait_for(lambda: log.exists() and PROMPT.search(log.read_bytes()) and log.read_bytes(),
                           BOOT_TIMEOUT)
        assert console, f"no shell prompt on the console within {BOOT_TIMEOUT} s:\n{log.read_text(errors='replace')}"
        assert b"kubevirt-py demo guest" in console
        assert f"kernel {demo_guest.kernel_version}".encode() in console
        assert b"printed from cloud-init userdata" in console
        assert PROMPT.search(console).group(0).startswith(f"[root@{name} ".encode())  # hostname from meta-data

        def ping():
            try:
                return agent(domain, "guest-ping")
            except libvirt.libvirtError:
                return None

        assert wait_for(ping, 60, 0.5) == {"return": {}}
        osinfo = agent(domain, "guest-get-osinfo")["return"]
        assert osinfo["kernel-release"] == demo_guest.kernel_version
        assert osinfo["id"] == "kubevirt-py-demo"

        started = time.monotonic()
        domain.shutdown()  # ACPI power button
        assert wait_for(lambda: not domain.isActive(), GRACE_SECONDS), "guest ignored the ACPI power button"
        assert time.monotonic() - started < GRACE_SECONDS
        assert b"ACPI power button: powering off" in log.read_bytes()
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        cleanup(vmi, ctx)

    assert domain_name(namespace, name) not in [d.name() for d in conn.listAllDomains()]
    assert not ctx.vmi_dir.exists()


EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "kubevirt-examples"
# what this machine lacks, and the reason KubeVirt-style status the handler will show
EXPECTED_REFUSALS = {
    "vmi-alpine-efi": "FirmwareUnavailable",    # EFI without the ovmf package
    "vmi-pvc": "FailedPvcNotFound",             # no PVC disk-alpine on this node
    "vm-alpine-multipvc": "FailedPvcNotFound",
}


def example_vmis():
    import yaml

    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            kind = (doc or {}).get("kind")
            template = {"VirtualMachineInstance": lambda d: d,
                        "VirtualMachine": lambda d: d["spec"]["template"],
                        "VirtualMachineInstanceReplicaSet": lambda d: d["spec"]["template"],
                        "VirtualMachinePool": lambda d: d["spec"]["virtualMachineTemplate"]["spec"]["template"],
                        }.get(kind)
            if template is not None:
                yield path.stem, template(doc)["spec"]


@needs_qemu
def test_every_kubevirt_example_starts_under_qemu_or_is_refused_with_a_reason(demo_guest, node_dir, system_libvirt):
    """Each example VMI, with the demo guest imported under the example image names, becomes a
    domain real QEMU starts (TCG), or is refused with the reason for what this node lacks."""
    from services.virt_handler.domain import DomainConversionError

    store = ImageStore(node_dir / "images")
    apply_demo_guest_import(store, demo_guest, conformance_names=True)
    domain_type = kvm_probe.compute_domain_type()
    seen = []
    for stem, spec in example_vmis():
        spec = json.loads(json.dumps(spec))
        for volume in spec.get("volumes", []):
            if "hostDisk" in volume:  # keep the host untouched: the file goes to the private node dir
                volume["hostDisk"]["path"] = str(node_dir / "hostdisks" / Path(volume["hostDisk"]["path"]).name)
        namespace = f"e2e-{uuid.uuid4().hex[:8]}"
        vmi = {"metadata": {"name": stem, "namespace": namespace, "uid": str(uuid.uuid4())}, "spec": spec}
        ctx = ConversionContext(domain_type=domain_type, vmi_dir=node_dir / "vmis" / namespace / stem, images=store,
                                pvc_root=node_dir / "pvcs", ovmf_dirs=(node_dir / "no-ovmf",))
        try:
            apply_disk_preparation(vmi, ctx)
            xml = compute_domain_xml(vmi, ctx)
        except DomainConversionError as exc:
            assert EXPECTED_REFUSALS.get(stem) == exc.reason, f"{stem}: {exc}"
            seen.append((stem, exc.reason))
            continue
        assert stem not in EXPECTED_REFUSALS, f"{stem} should have been refused"
        domain = system_libvirt.defineXML(xml)
        try:
            domain.create()
            assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING, stem
            seen.append((stem, "Running"))
        finally:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
            cleanup(vmi, ctx)
        assert not ctx.vmi_dir.exists()
    assert {s for s, _ in seen} >= {"vm-cirros", "vmi-kernel-boot", "vmi-nocloud", "vmi-sata", "vmi-host-disk"}
    assert sum(1 for _, r in seen if r == "Running") >= 10
