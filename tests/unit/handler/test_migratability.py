"""compute_migratability: KubeVirt's LiveMigratable condition and migration method, table-driven.

Expected reasons and messages are KubeVirt v1.9's (pkg/virt-handler/vm.go
calculateLiveMigrationCondition / checkVolumesForMigration, pkg/network/vmispec VerifyVMIMigratable).
"""

import msgspec
import pytest

from services.virt_handler.migratability import (
    MigratabilityOptions,
    compute_live_migratable,
    compute_live_migratable_condition,
    compute_migratability,
    compute_migration_method,
)
from shared.api.vmi import VirtualMachineInstance

RWX = {"claimName": "shared", "accessModes": ["ReadWriteMany"]}
RWO = {"claimName": "local", "accessModes": ["ReadWriteOnce"]}
POD_NET = [{"name": "default", "pod": {}}]
IFACE_MSG = "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
RWX_TAIL = "live migration requires that all PVCs must be shared (using ReadWriteMany access mode)"


def vmi(*, volumes=(), disks=(), interfaces=None, networks=None, annotations=None, domain=None, status=None,
        architecture=None):
    devices = {"disks": list(disks)}
    if interfaces is not None:
        devices["interfaces"] = interfaces
    spec = {"domain": {"devices": devices, **(domain or {})}, "volumes": list(volumes)}
    if networks is not None:
        spec["networks"] = networks
    if architecture:
        spec["architecture"] = architecture
    body = {"metadata": {"name": "v", "namespace": "default", "annotations": annotations or {}}, "spec": spec,
            "status": {"nodeName": "node-a", "phase": "Running", **(status or {})}}
    return msgspec.convert(body, VirtualMachineInstance)


def devices_domain(**devices):
    return {"devices": {"disks": [], **devices}}


MASQ = [{"name": "default", "masquerade": {}}]
BRIDGE = [{"name": "default", "bridge": {}}]

# (id, vmi kwargs, expected (migratable, reason, message), expected method)
CASES = [
    ("plain", {}, (True, None, None), "LiveMigration"),
    ("masquerade on pod network", {"interfaces": MASQ, "networks": POD_NET}, (True, None, None), "LiveMigration"),
    ("passt binding on pod network", {"interfaces": [{"name": "default", "passtBinding": {}}], "networks": POD_NET},
     (True, None, None), "LiveMigration"),
    ("bridge on pod network", {"interfaces": BRIDGE, "networks": POD_NET},
     (False, "InterfaceNotLiveMigratable", IFACE_MSG), "LiveMigration"),
    ("bridge on pod network, annotated",
     {"interfaces": BRIDGE, "networks": POD_NET,
      "annotations": {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}},
     (True, None, None), "LiveMigration"),
    ("bridge on a multus network only",
     {"interfaces": [{"name": "ext", "bridge": {}}], "networks": [{"name": "ext", "multus": {"networkName": "n"}}]},
     (True, None, None), "LiveMigration"),
    ("binding plugin without migration", {"interfaces": [{"name": "default", "binding": {"name": "b"}}],
                                          "networks": POD_NET},
     (False, "InterfaceNotLiveMigratable", IFACE_MSG), "LiveMigration"),
    ("pod network without its interface", {"interfaces": [{"name": "other", "masquerade": {}}], "networks": POD_NET},
     (False, "InterfaceNotLiveMigratable", "no primary interface found for network default"), "LiveMigration"),
    ("host device", {"domain": devices_domain(hostDevices=[{"name": "h", "deviceName": "x/y"}])},
     (False, "HostDeviceNotLiveMigratable", "VMI specifies non-migratable generic PCI host device"),
     "LiveMigration"),
    ("two gpus", {"domain": devices_domain(gpus=[{"name": "g1", "deviceName": "n/a"},
                                                 {"name": "g2", "deviceName": "n/a"}])},
     (False, "HostDeviceNotLiveMigratable", "VMI specifies too many GPUs"), "LiveMigration"),
    ("one gpu without the gate", {"domain": devices_domain(gpus=[{"name": "g", "deviceName": "n/a"}])},
     (False, "HostDeviceNotLiveMigratable",
      "VMI specifies a GPU but feature gate VGPULiveMigration is not enabled"), "LiveMigration"),
    ("sev", {"domain": {"launchSecurity": {"sev": {}}}},
     (False, "SEVNotLiveMigratable", "VMI uses SEV"), "LiveMigration"),
    ("snp", {"domain": {"launchSecurity": {"snp": {}}}},
     (False, "SEVNotLiveMigratable", "VMI uses SEV"), "LiveMigration"),
    ("tdx", {"domain": {"launchSecurity": {"tdx": {}}}},
     (False, "TDXNotLiveMigratable", "VMI uses TDX"), "LiveMigration"),
    ("secure execution", {"domain": {"launchSecurity": {}}, "architecture": "s390x"},
     (False, "SecureExecutionNotLiveMigratable", "VMI uses Secure Execution"), "LiveMigration"),
    ("hyperv passthrough", {"domain": {"features": {"hypervPassthrough": {"enabled": True}}}},
     (False, "HypervPassthroughNotLiveMigratable", "VMI uses hyperv passthrough"), "LiveMigration"),
    ("reenlightenment without tsc frequency",
     {"domain": {"features": {"hyperv": {"reenlightenment": {"enabled": True}}}}},
     (False, "NoTSCFrequencyNotLiveMigratable",
      "HyperV Reenlightenment VMIs cannot migrate when TSC Frequency is not exposed on the cluster: "
      "guest timers might be inconsistent"), "LiveMigration"),
    ("reenlightenment with tsc frequency",
     {"domain": {"features": {"hyperv": {"reenlightenment": {"enabled": True}}}},
      "status": {"topologyHints": {"tscFrequency": 2_000_000_000}}},
     (True, None, None), "LiveMigration"),
    ("invtsc is a boot requirement, not a migration one",
     {"domain": {"cpu": {"features": [{"name": "invtsc", "policy": "require"}]},
                 "features": {"hyperv": {"reenlightenment": {"enabled": True}}}}},
     (True, None, None), "LiveMigration"),
    ("containerDisk: block migration", {"volumes": [{"name": "root", "containerDisk": {"image": "i"}}],
                                        "disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
     (True, None, None), "BlockMigration"),
    ("emptyDisk: block migration", {"volumes": [{"name": "s", "emptyDisk": {"capacity": "1Gi"}}],
                                    "disks": [{"name": "s", "disk": {}}]},
     (True, None, None), "BlockMigration"),
    ("ephemeral: block migration",
     {"volumes": [{"name": "e", "ephemeral": {"persistentVolumeClaim": {"claimName": "c"}}}],
      "disks": [{"name": "e", "disk": {}}]},
     (True, None, None), "BlockMigration"),
    ("cloud-init disk: block migration",
     {"volumes": [{"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}}],
      "disks": [{"name": "ci", "disk": {"bus": "virtio"}}]},
     (True, None, None), "BlockMigration"),
    ("cloud-init on a read-only cdrom is not copied",
     {"volumes": [{"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}}],
      "disks": [{"name": "ci", "cdrom": {"bus": "sata"}}]},
     (True, None, None), "LiveMigration"),
    ("writable cdrom is copied",
     {"volumes": [{"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}}],
      "disks": [{"name": "ci", "cdrom": {"bus": "sata", "readonly": False}}]},
     (True, None, None), "BlockMigration"),
    ("pvc without claim info (no PVC objects here)",
     {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}], "disks": [{"name": "d"}]},
     (False, "DisksNotLiveMigratable", f"cannot migrate VMI: Unable to determine if PVC data is shared, {RWX_TAIL}"),
     "BlockMigration"),
    ("pvc ReadWriteOnce",
     {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}], "disks": [{"name": "d"}],
      "status": {"volumeStatus": [{"name": "d", "persistentVolumeClaimInfo": RWO}]}},
     (False, "DisksNotLiveMigratable", f"cannot migrate VMI: PVC data is not shared, {RWX_TAIL}"), "BlockMigration"),
    ("pvc ReadWriteMany",
     {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}], "disks": [{"name": "d"}],
      "status": {"volumeStatus": [{"name": "d", "persistentVolumeClaimInfo": RWX}]}},
     (True, None, None), "LiveMigration"),
    ("dataVolume without claim info",
     {"volumes": [{"name": "d", "dataVolume": {"name": "dv"}}], "disks": [{"name": "d"}]},
     (False, "DisksNotLiveMigratable", f"cannot migrate VMI: Unable to determine if PVC dv is shared, {RWX_TAIL}"),
     "BlockMigration"),
    ("pvc ReadWriteOnce being migrated (migratedVolumes)",
     {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}], "disks": [{"name": "d"}],
      "status": {"volumeStatus": [{"name": "d", "persistentVolumeClaimInfo": RWO}],
                 "migratedVolumes": [{"volumeName": "d"}]}},
     (True, None, None), "BlockMigration"),
    ("hostDisk not shared",
     {"volumes": [{"name": "h", "hostDisk": {"path": "/x.img", "type": "Disk"}}], "disks": [{"name": "h"}]},
     (False, "DisksNotLiveMigratable", "cannot migrate VMI with non-shared HostDisk"), "BlockMigration"),
    ("hostDisk shared",
     {"volumes": [{"name": "h", "hostDisk": {"path": "/x.img", "type": "Disk", "shared": True}}],
      "disks": [{"name": "h"}]},
     (True, None, None), "LiveMigration"),
    ("virtiofs filesystem migrates (KubeVirt >= v1.5)",
     {"volumes": [{"name": "fs", "persistentVolumeClaim": {"claimName": "c"}},
                  {"name": "cfg", "configMap": {"name": "m"}}],
      "domain": devices_domain(filesystems=[{"name": "cfg", "virtiofs": {}}]),
      "status": {"volumeStatus": [{"name": "fs", "persistentVolumeClaimInfo": RWX}]}},
     (True, None, None), "LiveMigration"),
    ("network is reported before disks",
     {"interfaces": BRIDGE, "networks": POD_NET,
      "volumes": [{"name": "h", "hostDisk": {"path": "/x.img", "type": "Disk"}}], "disks": [{"name": "h"}]},
     (False, "InterfaceNotLiveMigratable", IFACE_MSG), "BlockMigration"),
    ("host device is reported before disks",
     {"domain": devices_domain(hostDevices=[{"name": "h", "deviceName": "x"}]),
      "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
     (False, "HostDeviceNotLiveMigratable", "VMI specifies non-migratable generic PCI host device"),
     "BlockMigration"),
]


@pytest.mark.parametrize(("kwargs", "expected", "method"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_live_migratable_table(kwargs, expected, method):
    subject = vmi(**kwargs)
    assert compute_live_migratable(subject) == expected
    assert compute_migration_method(subject) == method


def test_gpu_with_gate_and_mediated_device_migrates():
    subject = vmi(domain=devices_domain(gpus=[{"name": "g", "deviceName": "nvidia.com/GRID_T4-1Q"}]))
    gate_only = MigratabilityOptions(vgpu_live_migration=True)
    assert compute_live_migratable(subject, gate_only) == (
        False, "HostDeviceNotLiveMigratable", "VMI specifies non-migratable GPU device")
    both = MigratabilityOptions(vgpu_live_migration=True, mediated_devices={"nvidia.com/GRID_T4-1Q"})
    assert compute_live_migratable(subject, both) == (True, None, None)


def test_binding_plugin_with_migration_support():
    subject = vmi(interfaces=[{"name": "default", "binding": {"name": "managedtap"}}], networks=POD_NET)
    assert compute_live_migratable(subject, MigratabilityOptions(migratable_bindings={"managedtap"}))[0] is True


def test_host_model_cpu_on_a_node_without_host_model():
    subject = vmi(domain={"cpu": {"model": "host-model"}})
    assert compute_live_migratable(subject)[0] is True
    assert compute_live_migratable(subject, MigratabilityOptions(host_cpu_model="")) == (
        False, "CPUModeLiveMigratable", 'the node "node-a" does not allow migration with host-model')


def test_condition_shapes():
    blocked = vmi(interfaces=BRIDGE, networks=POD_NET)
    condition = compute_live_migratable_condition(blocked)
    assert (condition.type, condition.status, condition.reason, condition.message) == (
        "LiveMigratable", "False", "InterfaceNotLiveMigratable", IFACE_MSG)
    assert condition.last_transition_time is None
    assert compute_migratability(blocked).as_condition_dict("2026-01-01T00:00:00Z") == {
        "type": "LiveMigratable", "status": "False", "lastProbeTime": None,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "InterfaceNotLiveMigratable", "message": IFACE_MSG}
    fine = compute_migratability(vmi()).as_condition_dict("t")
    assert fine == {"type": "LiveMigratable", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t"}


def test_input_not_modified():
    subject = vmi(volumes=[{"name": "root", "containerDisk": {"image": "i"}}], disks=[{"name": "root"}])
    before = msgspec.json.encode(subject)
    compute_migratability(subject)
    assert msgspec.json.encode(subject) == before
