"""KubeVirt's create-time defaults (kubevirt-api.md §6.1) are applied to VMIs and, the VM
mutator's part, to VM templates."""

import pytest
from admission_builders import (
    make_vm,
    make_vmi,
    with_devices,
    with_disk_and_volume,
    with_domain,
    with_pod_network,
    with_spec,
    with_volume,
    without,
)

from shared.admission import ClusterConfig, admit
from shared.admission.vmi_defaults import compute_image_pull_policy
from shared.api.resources import VIRTUAL_MACHINE, VIRTUAL_MACHINE_INSTANCE

FIXED_UUID = "11111111-2222-4333-8444-555555555555"


def admitted_spec(*changes, cluster=ClusterConfig()):
    result = admit(VIRTUAL_MACHINE_INSTANCE, make_vmi(*changes), operation="CREATE", cluster=cluster,
                   new_uuid=lambda: FIXED_UUID, now=lambda: "2026-12-02T08:00:00Z")
    return result.obj["spec"], result.obj["status"]


def test_machine_type_architecture_and_cpu_model():
    spec, _ = admitted_spec()
    assert spec["architecture"] == "amd64"
    assert spec["domain"]["machine"] == {"type": "q35"}
    assert spec["domain"]["cpu"]["model"] == "host-model"


@pytest.mark.parametrize(
    ("resources", "cpu", "topology"),
    [
        pytest.param({}, None, (1, 1, 1), id="nothing"),
        pytest.param({"requests": {"cpu": "3"}}, None, (3, 1, 1), id="from-requests"),
        pytest.param({"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}, None, (2, 1, 1), id="limits-win"),
        pytest.param({"requests": {"cpu": "500m"}}, None, (1, 1, 1), id="fraction-rounds-up"),
        pytest.param({"requests": {"cpu": "4"}}, {"cores": 2}, (1, 2, 1), id="explicit-cores-win"),
    ],
)
def test_cpu_topology_from_requests_and_limits(resources, cpu, topology):
    changes = [with_domain(resources=resources)]
    if cpu:
        changes.append(with_domain(cpu=cpu))
    spec, status = admitted_spec(*changes)
    got = spec["domain"]["cpu"]
    assert (got["sockets"], got["cores"], got["threads"]) == topology
    assert status["currentCPUTopology"] == dict(zip(("sockets", "cores", "threads"), topology))


def test_cpu_limit_alone_is_copied_to_requests():
    spec, _ = admitted_spec(with_domain(resources={"limits": {"cpu": "2"}}))
    assert spec["domain"]["resources"]["requests"]["cpu"] == "2"


def test_max_sockets_is_the_hotplug_ratio_capped_at_512_vcpus():
    spec, _ = admitted_spec(with_domain(cpu={"sockets": 2}))
    assert spec["domain"]["cpu"]["maxSockets"] == 8
    spec, _ = admitted_spec(with_domain(cpu={"sockets": 100, "cores": 2}))
    assert spec["domain"]["cpu"]["maxSockets"] == 256
    spec, _ = admitted_spec(cluster=ClusterConfig(vm_rollout_strategy="Stage"))
    assert "maxSockets" not in spec["domain"]["cpu"]


def test_max_guest_only_with_memory_hotplug_and_a_gibibyte():
    spec, _ = admitted_spec(with_domain(memory={"guest": "2Gi"}), cluster=ClusterConfig(memory_hotplug=True))
    assert spec["domain"]["memory"]["maxGuest"] == "8Gi"
    spec, _ = admitted_spec(with_domain(memory={"guest": "2Gi"}))
    assert "maxGuest" not in spec["domain"]["memory"]
    spec, _ = admitted_spec(cluster=ClusterConfig(memory_hotplug=True))
    assert "maxGuest" not in spec["domain"]["memory"]


@pytest.mark.parametrize(
    ("resources", "guest"),
    [
        pytest.param({"requests": {"memory": "1Gi"}}, "1Gi", id="requests"),
        pytest.param({"limits": {"memory": "512Mi"}}, "512Mi", id="limits"),
        pytest.param({"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}, "256Mi", id="requests-first"),
    ],
)
def test_guest_memory_from_resources(resources, guest):
    spec, status = admitted_spec(without("domain", "memory"), with_domain(resources=resources))
    assert spec["domain"]["memory"]["guest"] == guest
    assert status["memory"] == {"guestAtBoot": guest, "guestCurrent": guest, "guestRequested": guest}


def test_explicit_guest_memory_is_kept():
    spec, _ = admitted_spec(with_domain(resources={"requests": {"memory": "1Gi"}}))
    assert spec["domain"]["memory"]["guest"] == "128Mi"


def test_disk_targets_and_buses():
    spec, _ = admitted_spec(
        with_disk_and_volume("plain", {}, {"emptyDisk": {"capacity": "1Gi"}}),
        with_disk_and_volume("iso", {"cdrom": {}}, {"containerDisk": {"image": "i:1"}}),
    )
    disks = {d["name"]: d for d in spec["domain"]["devices"]["disks"]}
    assert disks["root"]["disk"] == {"bus": "virtio"}
    assert disks["plain"]["disk"] == {"bus": "sata"}
    assert disks["iso"]["cdrom"] == {"bus": "sata", "readonly": True, "tray": "closed"}


def test_arm64_defaults_to_virtio_and_virt_machine():
    spec, _ = admitted_spec(with_spec(architecture="arm64"), with_disk_and_volume("d", {}, {"emptyDisk": {"capacity": "1Gi"}}))
    assert spec["domain"]["machine"]["type"] == "virt"
    assert spec["domain"]["devices"]["disks"][1]["disk"]["bus"] == "virtio"
    assert "maxSockets" not in spec["domain"]["cpu"]


def test_a_disk_is_added_for_every_volume_when_no_disks_are_listed():
    spec, _ = admitted_spec(
        without("domain", "devices", "disks"),
        with_volume({"name": "data", "emptyDisk": {"capacity": "1Gi"}}),
        with_volume({"name": "dump", "memoryDump": {"claimName": "c"}}),
    )
    assert spec["domain"]["devices"]["disks"] == [
        {"name": "root", "disk": {"bus": "sata"}},
        {"name": "data", "disk": {"bus": "sata"}},
    ]


def test_default_pod_network_and_bridge_interface():
    spec, _ = admitted_spec()
    assert spec["networks"] == [{"name": "default", "pod": {}}]
    assert spec["domain"]["devices"]["interfaces"] == [{"name": "default", "bridge": {}}]
    spec, _ = admitted_spec(cluster=ClusterConfig(default_network_interface="masquerade"))
    assert spec["domain"]["devices"]["interfaces"] == [{"name": "default", "masquerade": {}}]


def test_no_default_network_when_user_gave_one_or_disabled_it():
    spec, _ = admitted_spec(with_pod_network("masquerade"))
    assert spec["domain"]["devices"]["interfaces"] == [{"name": "default", "masquerade": {}}]
    spec, _ = admitted_spec(with_devices(autoattachPodInterface=False))
    assert "networks" not in spec
    assert "interfaces" not in spec["domain"]["devices"]


def test_firmware_uuid_features_and_efi():
    spec, _ = admitted_spec(with_domain(firmware={"bootloader": {"efi": {}}}, features={"smm": {}}))
    assert spec["domain"]["firmware"]["uuid"] == FIXED_UUID
    assert spec["domain"]["firmware"]["bootloader"]["efi"] == {"secureBoot": True}
    assert spec["domain"]["features"] == {"acpi": {"enabled": True}, "smm": {"enabled": True}}


def test_given_firmware_uuid_is_kept_and_random_ones_differ():
    spec, _ = admitted_spec(with_domain(firmware={"uuid": "aaaaaaaa-0000-4000-8000-000000000000"}))
    assert spec["domain"]["firmware"]["uuid"] == "aaaaaaaa-0000-4000-8000-000000000000"
    first = admit(VIRTUAL_MACHINE_INSTANCE, make_vmi(), operation="CREATE").obj["spec"]["domain"]["firmware"]["uuid"]
    second = admit(VIRTUAL_MACHINE_INSTANCE, make_vmi(), operation="CREATE").obj["spec"]["domain"]["firmware"]["uuid"]
    assert first != second


def test_hyperv_spinlocks_inputs_watchdog_and_probes():
    spec, _ = admitted_spec(
        with_domain(features={"hyperv": {"spinlocks": {}, "relaxed": {"enabled": False}}}),
        with_devices(inputs=[{"name": "tablet"}], watchdog={"name": "w", "i6300esb": {}}),
        with_spec(readinessProbe={"guestAgentPing": {}}),
    )
    hyperv = spec["domain"]["features"]["hyperv"]
    assert hyperv == {"spinlocks": {"enabled": True, "spinlocks": 4096}, "relaxed": {"enabled": False}}
    assert spec["domain"]["devices"]["inputs"] == [{"name": "tablet", "bus": "usb", "type": "tablet"}]
    assert spec["domain"]["devices"]["watchdog"]["i6300esb"] == {"action": "reset"}
    assert spec["readinessProbe"] == {"guestAgentPing": {}, "timeoutSeconds": 1, "periodSeconds": 10,
                                      "successThreshold": 1, "failureThreshold": 3}


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        pytest.param("registry:5000/kubevirt/cirros:devel", "IfNotPresent", id="tag-with-registry-port"),
        pytest.param("quay.io/containerdisks/fedora:latest", "Always", id="latest"),
        pytest.param("quay.io/containerdisks/fedora", "Always", id="no-tag"),
        pytest.param("registry:5000/fedora", "Always", id="port-but-no-tag"),
        pytest.param("quay.io/fedora@sha256:abc", "IfNotPresent", id="digest"),
    ],
)
def test_container_disk_pull_policy(image, policy):
    assert compute_image_pull_policy(image) == policy


def test_eviction_strategy_copied_from_cluster_when_set():
    spec, _ = admitted_spec()
    assert "evictionStrategy" not in spec
    spec, _ = admitted_spec(cluster=ClusterConfig(eviction_strategy="LiveMigrate"))
    assert spec["evictionStrategy"] == "LiveMigrate"


def test_vmi_status_starts_pending():
    _, status = admitted_spec()
    assert status["phase"] == "Pending"
    assert status["phaseTransitionTimestamps"] == [{"phase": "Pending",
                                                   "phaseTransitionTimestamp": "2026-12-02T08:00:00Z"}]


def test_vm_template_gets_the_vm_mutator_defaults_only():
    ids = iter(["uuid-1", "serial-1"])
    result = admit(VIRTUAL_MACHINE, make_vm(), operation="CREATE", new_uuid=lambda: next(ids))
    template = result.obj["spec"]["template"]["spec"]
    assert template["architecture"] == "amd64"
    assert template["domain"]["machine"] == {"type": "q35"}
    assert template["domain"]["firmware"] == {"uuid": "uuid-1", "serial": "serial-1"}
    assert "cpu" not in template["domain"]
    assert "networks" not in template
    assert "status" not in result.obj


def test_vm_update_does_not_default_again():
    vm = make_vm()
    result = admit(VIRTUAL_MACHINE, vm, operation="UPDATE", old=vm)
    assert "firmware" not in result.obj["spec"]["template"]["spec"]["domain"]


def test_stable_firmware_uuid_is_uuid5_of_the_vm_name():
    import uuid

    from shared.admission.vmi_defaults import compute_stable_firmware_uuid

    value = compute_stable_firmware_uuid("vm-cirros")
    assert value == compute_stable_firmware_uuid("vm-cirros") != compute_stable_firmware_uuid("vm-other")
    parsed = uuid.UUID(value)
    assert parsed.version == 5
    assert parsed == uuid.uuid5(uuid.UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895"), "vm-cirros")
