"""The handler's status carries LiveMigratable and migrationMethod from the migratability module
(:mod:`services.virt_handler.migratability`), and Node registration carries the migration
annotations."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import msgspec

from services.virt_handler import status as vmi_status
from services.virt_handler.hypervisor_types import NodeInfo
from services.virt_handler.main import HandlerSettings, compute_node_annotations
from services.virt_handler.node import compute_node
from services.virt_handler.sync_executor import compute_migratability_status, migratability_with_time
from shared.api.vmi import VirtualMachineInstance

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
VMI = {"metadata": {"name": "vm1", "namespace": "default", "uid": "u1"}, "spec": {"domain": {"devices": {}}},
       "status": {"phase": "Running", "nodeName": "a"}}


def test_live_migratable_condition_and_method_from_the_migratability_module():
    host_disk = {**VMI, "spec": {"domain": {"devices": {"disks": [{"name": "hd", "disk": {}}]}},
                                 "volumes": [{"name": "hd", "hostDisk": {"path": "/var/x.img", "type": "Disk"}}]}}
    found = compute_migratability_status(msgspec.convert(host_disk, VirtualMachineInstance))
    assert found[0]["type"] == "LiveMigratable" and found[0]["status"] == "False"
    assert found[0]["reason"] == "DisksNotLiveMigratable"
    assert found[1] == "BlockMigration"  # a hostDisk is a node-local volume
    plain = compute_migratability_status(msgspec.convert(VMI, VirtualMachineInstance))
    assert plain == ({"type": "LiveMigratable", "status": "True"}, "LiveMigration")
    status = vmi_status.compute_live_status(VMI, "Running", "Booted", now=NOW,
                                            migratability=migratability_with_time(found, NOW))
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["LiveMigratable"]["reason"] == "DisksNotLiveMigratable"
    assert conditions["LiveMigratable"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert status["migrationMethod"] == "BlockMigration"
    again = vmi_status.compute_live_status({**VMI, "status": status}, "Running", "Booted", now=NOW.replace(year=2027),
                                           migratability=migratability_with_time(found, NOW.replace(year=2027)))
    assert again == status  # an unchanged condition keeps its time: no write


def test_node_annotations_for_migration():
    settings = HandlerSettings(nats_servers=(), node_name="n2", libvirt_uri="qemu+unix:///system?socket=/run/x/sock",
                               state_dir=Path("/var/lib/n2"))
    annotations = compute_node_annotations(settings)
    assert annotations == {"kubevirt-py.io/libvirt-migration-uri": "qemu+unix:///system?socket=/run/x/sock",
                           "kubevirt-py.io/vmi-state-dir": "/var/lib/n2/vmis",
                           "kubevirt-py.io/fence-after-seconds": "20"}
    info = NodeInfo(cpus=2, memory_bytes=2**30, cpu_model="m", cpu_vendor="", cpu_features=(), arch="x86_64",
                    hostname="n2", mhz=1)
    node = compute_node(None, "n2", info, NOW, annotations=annotations)
    assert node["metadata"]["annotations"]["kubevirt-py.io/vmi-state-dir"] == "/var/lib/n2/vmis"
    assert node["metadata"]["annotations"]["kubevirt.io/heartbeat"] == "2026-01-01T00:00:00Z"
    explicit = HandlerSettings(nats_servers=(), node_name="n1", libvirt_uri="qemu:///system", state_dir=Path("/s"),
                               migration_uri="qemu+tcp://h/system")
    assert compute_node_annotations(explicit)["kubevirt-py.io/libvirt-migration-uri"] == "qemu+tcp://h/system"
    unfenced = HandlerSettings(nats_servers=(), node_name="n1", libvirt_uri="qemu:///system", state_dir=Path("/s"),
                               fence_after=0)
    assert "kubevirt-py.io/fence-after-seconds" not in compute_node_annotations(unfenced)
    handed_over = compute_node(node, "n2", info, NOW, annotations={},
                               drop_annotations=("kubevirt-py.io/fence-after-seconds",))
    assert "kubevirt-py.io/fence-after-seconds" not in handed_over["metadata"]["annotations"]
