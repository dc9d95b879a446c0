"""A simulated node's own libvirtd (private namespace, own host UUID) runs a TCG guest."""

from __future__ import annotations

import shutil
import tempfile
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

libvirt = pytest.importorskip("libvirt")

from guest.demo_guest import DEMO_DISK_REF, apply_demo_guest_build, apply_demo_guest_import  # noqa: E402
from services.virt_handler.domain import ConversionContext, apply_disk_preparation, cleanup, compute_domain_xml  # noqa: E402,E501
from shared import libvirtd  # noqa: E402
from shared.images import ImageStore  # noqa: E402

CACHE = Path(__import__("os").environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))


@pytest.mark.skipif(shutil.which("libvirtd") is None or shutil.which("unshare") is None,
                    reason="libvirtd/unshare not installed")
def test_node_daemon_has_its_own_host_uuid_and_hostname_and_runs_a_guest():
    base = Path(tempfile.mkdtemp(prefix="kubevirt-py-node-", dir="/var/tmp"))
    base.chmod(0o755)
    host_uuid = str(uuid.uuid4())
    node = libvirtd.apply_node_daemons(base / "node", "sim-node-1", host_uuid)
    try:
        assert libvirtd.apply_node_daemons(base / "node", "sim-node-1", host_uuid).pids == node.pids  # idempotent
        conn = libvirt.open(node.uri)
        try:
            assert ET.fromstring(conn.getCapabilities()).findtext("host/uuid") == host_uuid
            assert conn.getHostname() == "sim-node-1"
            assert conn.listAllDomains() == []  # no definitions copied from the system daemon

            guest = apply_demo_guest_build(CACHE)
            store = ImageStore(base / "images")
            apply_demo_guest_import(store, guest)
            vmi = {"metadata": {"name": "on-node", "namespace": "sim", "uid": str(uuid.uuid4())},
                   "spec": {"domain": {"memory": {"guest": "128Mi"},
                                       "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
                            "volumes": [{"name": "root", "containerDisk": {"image": DEMO_DISK_REF}}]}}
            ctx = ConversionContext(domain_type="qemu", vmi_dir=base / "vmis" / "on-node", images=store)
            apply_disk_preparation(vmi, ctx)
            domain = conn.defineXML(compute_domain_xml(vmi, ctx))
            try:
                domain.create()
                assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            finally:
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
                cleanup(vmi, ctx)
        finally:
            conn.close()
    finally:
        libvirtd.apply_stop_node(node)
        shutil.rmtree(base, ignore_errors=True)
    assert not any(libvirtd.is_pid_alive(p) for p in node.pids.values())
