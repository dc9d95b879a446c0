"""Each VMI rule (kubevirt-api.md §6.3) rejects what it should, at the field KubeVirt names,
and accepts the valid neighbour."""

import pytest
from admission_builders import (
    make_vmi,
    with_devices,
    with_disk,
    with_disk_and_volume,
    with_domain,
    with_pod_network,
    with_spec,
    with_volume,
    without,
)

from shared.admission import admit
from shared.api.resources import VIRTUAL_MACHINE_INSTANCE
from shared.errors import Invalid

PVC = {"persistentVolumeClaim": {"claimName": "data"}}
CD = {"containerDisk": {"image": "example.org/x:1"}}
EFI_NO_SMM = {"bootloader": {"efi": {}}}


def causes_of(vmi):
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE, vmi, operation="CREATE")
    return [(c.field, c.reason) for c in info.value.causes], info.value


REJECTED = [
    # storage
    pytest.param([with_disk({"name": "root", "disk": {}})], "spec.domain.devices.disks[1].name", id="duplicate-disk"),
    pytest.param([with_disk_and_volume("two", {"disk": {}, "cdrom": {}}, CD)], "spec.domain.devices.disks[1]",
                 id="two-targets"),
    pytest.param([with_disk_and_volume("Bad_Name", {"disk": {}}, CD)], "spec.domain.devices.disks[1].name",
                 id="disk-name-not-label"),
    pytest.param([with_disk({"name": "ghost"})], "spec.domain.devices.disks[1].name", id="disk-without-volume"),
    pytest.param([with_volume({"name": "lonely", **CD})], "spec.volumes[1].name", id="volume-without-disk"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {})], "spec.volumes[1]", id="volume-without-source"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {**CD, **PVC})], "spec.volumes[1]", id="volume-two-sources"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"dataVolume": {}})], "spec.volumes[1].dataVolume.name",
                 id="datavolume-without-name"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "ide"}}, CD)], "spec.domain.devices.disks[1].disk.bus",
                 id="ide-bus"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "floppy"}}, CD)],
                 "spec.domain.devices.disks[1].disk.bus", id="unknown-bus"),
    pytest.param([with_disk_and_volume("x", {"cdrom": {"bus": "virtio"}}, CD)],
                 "spec.domain.devices.disks[1].cdrom.bus", id="virtio-cdrom"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "sata", "readonly": True}}, CD)],
                 "spec.domain.devices.disks[1].disk.readonly", id="readonly-sata"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "sata"}, "dedicatedIOThread": True}, CD)],
                 "spec.domain.devices.disks[1].dedicatedIOThread", id="iothread-on-sata"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "sata", "pciAddress": "0000:00:05.0"}}, CD)],
                 "spec.domain.devices.disks[1].disk.pciAddress", id="pci-address-on-sata"),
    pytest.param([with_disk_and_volume("x", {"disk": {"pciAddress": "zz"}}, CD)],
                 "spec.domain.devices.disks[1].disk.pciAddress", id="malformed-pci-address"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "bootOrder": 0}, CD)],
                 "spec.domain.devices.disks[1].bootOrder", id="boot-order-zero"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "bootOrder": 1}, CD),
                  with_disk_and_volume("y", {"disk": {}, "bootOrder": 1}, CD)],
                 "spec.domain.devices.disks[2].bootOrder", id="boot-order-duplicate"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "serial": "has space"}, CD)],
                 "spec.domain.devices.disks[1].serial", id="serial-chars"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "serial": "a" * 257}, CD)],
                 "spec.domain.devices.disks[1].serial", id="serial-length"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "cache": "unsafe"}, CD)],
                 "spec.domain.devices.disks[1].cache", id="cache-mode"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "io": "uring"}, CD)], "spec.domain.devices.disks[1].io",
                 id="io-mode"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "errorPolicy": "panic"}, CD)],
                 "spec.domain.devices.disks[1].errorPolicy", id="error-policy"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "blockSize": {"custom": {"logical": 1000}}}, CD)],
                 "spec.domain.devices.disks[1].blockSize.custom.logical", id="block-size-not-power-of-two"),
    pytest.param([with_disk_and_volume("x", {"disk": {}, "blockSize": {"custom": {"logical": 4096, "physical": 512}}},
                                       CD)],
                 "spec.domain.devices.disks[1].blockSize.custom.logical", id="block-size-logical-over-physical"),
    pytest.param([with_disk_and_volume("x", {"lun": {}}, CD)], "spec.domain.devices.disks[1].lun",
                 id="lun-on-container-disk"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"cloudInitNoCloud": {}})], "spec.volumes[1].cloudInitNoCloud",
                 id="cloud-init-without-data"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"cloudInitNoCloud": {"userData": "a",
                                                                              "userDataBase64": "YQ=="}})],
                 "spec.volumes[1].cloudInitNoCloud", id="cloud-init-two-userdata"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"cloudInitConfigDrive": {"userDataBase64": "!!"}})],
                 "spec.volumes[1].cloudInitConfigDrive.userDataBase64", id="cloud-init-bad-base64"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"cloudInitNoCloud": {"networkData": "n" * 2049}})],
                 "spec.volumes[1].cloudInitNoCloud", id="cloud-init-networkdata-too-large"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"hostDisk": {"path": "/d.img", "type": "Disk",
                                                                       "capacity": "1Gi"}})],
                 "spec.volumes[1].hostDisk.capacity", id="hostdisk-capacity-with-disk-type"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"hostDisk": {"path": "/d.img", "type": "File"}})],
                 "spec.volumes[1].hostDisk.type", id="hostdisk-type"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"secret": {}})], "spec.volumes[1].secret.secretName",
                 id="secret-without-name"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"serviceAccount": {"serviceAccountName": "a"}}),
                  with_disk_and_volume("y", {"disk": {}}, {"serviceAccount": {"serviceAccountName": "b"}})],
                 "spec.volumes[2]", id="two-service-accounts"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"containerDisk": {"image": "i", "path": "/"}})],
                 "spec.volumes[1].containerDisk.path", id="container-disk-path-root"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"containerDisk": {"image": "i", "path": "a/../b"}})],
                 "spec.volumes[1].containerDisk.path", id="container-disk-path-relative"),
    pytest.param([with_disk_and_volume("x", {"disk": {}}, {"containerDisk": {"image": ""}})],
                 "spec.volumes[1].containerDisk.image", id="container-disk-empty-image"),
    # compute
    pytest.param([without("domain", "memory")], "spec.domain.resources.requests.memory", id="no-memory"),
    pytest.param([with_domain(resources={"requests": {"memory": "512Mi"}, "limits": {"memory": "256Mi"}})],
                 "spec.domain.resources.requests.memory", id="memory-request-over-limit"),
    pytest.param([with_domain(resources={"requests": {"memory": "100k"}})], "spec.domain.resources.requests.memory",
                 id="memory-request-below-1M"),
    pytest.param([with_domain(resources={"requests": {"memory": "lots"}})], "spec.domain.resources.requests.memory",
                 id="memory-not-a-quantity"),
    pytest.param([with_domain(memory={"guest": "1Gb"})], "spec.domain.memory.guest", id="guest-not-a-quantity"),
    pytest.param([with_domain(memory={"guest": "3Mi", "hugepages": {"pageSize": "2Mi"}})],
                 "spec.domain.memory.hugepages.pageSize", id="hugepages-not-a-multiple"),
    pytest.param([with_domain(memory={"guest": "1Mi", "hugepages": {"pageSize": "2Mi"}})],
                 "spec.domain.memory.hugepages.pageSize", id="hugepages-over-memory"),
    pytest.param([with_domain(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})],
                 "spec.domain.resources.requests.cpu", id="cpu-request-over-limit"),
    pytest.param([with_domain(resources={"requests": {"cpu": "-1"}})], "spec.domain.resources.requests.cpu",
                 id="negative-cpu"),
    pytest.param([with_domain(cpu={"features": [{"name": "vmx", "policy": "maybe"}]})],
                 "spec.domain.cpu.features[0].policy", id="cpu-feature-policy"),
    pytest.param([with_domain(cpu={"isolateEmulatorThread": True})], "spec.domain.cpu.isolateEmulatorThread",
                 id="isolate-emulator-without-dedicated"),
    pytest.param([with_domain(cpu={"dedicatedCpuPlacement": True, "threads": 4})], "spec.domain.cpu.threads",
                 id="dedicated-too-many-threads"),
    pytest.param([with_domain(cpu={"realtime": {}})], "spec.domain.cpu.realtime", id="realtime-without-dedicated"),
    pytest.param([with_domain(cpu={"sockets": 8, "maxSockets": 2})], "spec.domain.cpu.sockets",
                 id="sockets-over-max"),
    pytest.param([with_domain(machine={"type": "pc-i440fx-7.2"})], "spec.domain.machine.type", id="machine-type"),
    pytest.param([with_spec(architecture="riscv64")], "spec.architecture", id="architecture"),
    pytest.param([with_spec(architecture="arm64"), with_domain(cpu={"threads": 2})], "spec.domain.cpu.threads",
                 id="arm64-threads"),
    # firmware
    pytest.param([with_domain(firmware={"bootloader": {"bios": {}, "efi": {"secureBoot": False}}})],
                 "spec.domain.firmware.bootloader", id="bios-and-efi"),
    pytest.param([with_domain(firmware=EFI_NO_SMM)], "spec.domain", id="secureboot-without-smm"),
    pytest.param([with_domain(firmware=EFI_NO_SMM, features={"smm": {"enabled": False}})], "spec.domain",
                 id="secureboot-with-smm-disabled"),
    pytest.param([with_domain(firmware={"acpi": {"slicNameRef": "missing"}})], "spec.domain.firmware.acpi.slicNameRef",
                 id="acpi-table-missing-volume"),
    # lifecycle
    pytest.param([with_spec(startStrategy="Later")], "spec.startStrategy", id="start-strategy"),
    pytest.param([with_spec(startStrategy="Paused", livenessProbe={"guestAgentPing": {}})], "spec.startStrategy",
                 id="paused-with-liveness-probe"),
    pytest.param([with_spec(evictionStrategy="Sometimes")], "spec.evictionStrategy", id="eviction-strategy"),
    pytest.param([with_spec(readinessProbe={"periodSeconds": 5})], "spec.readinessProbe", id="probe-without-handler"),
    pytest.param([with_spec(readinessProbe={"exec": {"command": ["true"]}, "guestAgentPing": {}})],
                 "spec.readinessProbe", id="probe-two-handlers"),
    pytest.param([with_devices(autoattachPodInterface=False),
                  with_spec(livenessProbe={"tcpSocket": {"port": 22}})],
                 "spec.livenessProbe.tcpSocket", id="tcp-probe-without-pod-network"),
    pytest.param([with_spec(hostname="Not_A_Label")], "spec.hostname", id="hostname"),
    pytest.param([with_spec(subdomain="-bad-")], "spec.subdomain", id="subdomain"),
    pytest.param([with_spec(dnsPolicy="None")], "spec.dnsConfig.nameservers", id="dns-none-without-nameservers"),
    pytest.param([with_spec(dnsPolicy="Sometimes")], "spec.dnsPolicy", id="dns-policy"),
    pytest.param([with_spec(dnsConfig={"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "1.0.0.1"]})],
                 "spec.dnsConfig.nameservers", id="too-many-nameservers"),
    pytest.param([with_spec(dnsConfig={"nameservers": ["dns.example"]})], "spec.dnsConfig.nameservers[0]",
                 id="nameserver-not-ip"),
    pytest.param([with_spec(dnsConfig={"searches": [f"s{i}.example" for i in range(7)]})], "spec.dnsConfig.searches",
                 id="too-many-searches"),
    # devices
    pytest.param([with_devices(inputs=[{"name": "t", "bus": "ps2"}])], "spec.domain.devices.inputs[0].bus",
                 id="input-bus"),
    pytest.param([with_devices(inputs=[{"name": "k", "type": "keyboard"}])], "spec.domain.devices.inputs[0].type",
                 id="input-type"),
    pytest.param([with_domain(ioThreadsPolicy="many")], "spec.domain.ioThreadsPolicy", id="io-threads-policy"),
    pytest.param([with_domain(ioThreadsPolicy="supplementalPool")],
                 "spec.domain.ioThreads.supplementalPoolThreadCount", id="supplemental-pool-without-count"),
    pytest.param([with_devices(sound={"name": "s", "model": "sb16"})], "spec.domain.devices.sound.model",
                 id="sound-model"),
    pytest.param([with_devices(panicDevices=[{"model": "loud"}])], "spec.domain.devices.panicDevices[0].model",
                 id="panic-model"),
    pytest.param([with_devices(watchdog={"name": "w", "i6300esb": {"action": "explode"}})],
                 "spec.domain.devices.watchdog.i6300esb.action", id="watchdog-action"),
    # access credentials
    pytest.param([with_spec(accessCredentials=[{"sshPublicKey": {"source": {"secret": {"secretName": "k"}},
                                                                 "propagationMethod": {"noCloud": {}}}}])],
                 "spec.accessCredentials[0].sshPublicKey.propagationMethod.noCloud", id="nocloud-propagation-no-volume"),
    pytest.param([with_spec(accessCredentials=[{}])], "spec.accessCredentials[0]", id="credential-without-type"),
    # network
    pytest.param([with_pod_network(), with_spec(networks=[{"name": "default", "pod": {}}, {"name": "default",
                                                                                           "pod": {}}])],
                 "spec.networks[1].name", id="duplicate-network"),
    pytest.param([with_pod_network(), with_spec(networks=[{"name": "default"}])], "spec.networks[0]",
                 id="network-without-source"),
    pytest.param([with_pod_network(), with_spec(networks=[{"name": "other", "pod": {}}])],
                 "spec.domain.devices.interfaces[0].name", id="interface-without-network"),
    pytest.param([with_pod_network(), with_spec(networks=[{"name": "default", "pod": {}},
                                                          {"name": "extra", "multus": {"networkName": "n"}}])],
                 "spec.networks[1].name", id="network-without-interface"),
    pytest.param([with_pod_network("slirp")], "spec.domain.devices.interfaces[0].slirp", id="slirp-discontinued"),
    pytest.param([with_pod_network(binding="masquerade", bridge={})], "spec.domain.devices.interfaces[0]",
                 id="two-bindings"),
    pytest.param([with_spec(networks=[{"name": "default", "multus": {"networkName": "n"}}]),
                  with_devices(interfaces=[{"name": "default", "masquerade": {}}])],
                 "spec.domain.devices.interfaces[0].masquerade", id="masquerade-on-multus"),
    pytest.param([with_pod_network(model="rtl9999")], "spec.domain.devices.interfaces[0].model",
                 id="interface-model"),
    pytest.param([with_pod_network(macAddress="not-a-mac")], "spec.domain.devices.interfaces[0].macAddress",
                 id="mac-address"),
    pytest.param([with_pod_network(ports=[{"port": 80, "protocol": "SCTP"}])],
                 "spec.domain.devices.interfaces[0].ports[0].protocol", id="port-protocol"),
    pytest.param([with_pod_network(ports=[{"port": 70000}])], "spec.domain.devices.interfaces[0].ports[0].port",
                 id="port-range"),
    pytest.param([with_pod_network(dhcpOptions={"privateOptions": [{"option": 100, "value": "x"}]})],
                 "spec.domain.devices.interfaces[0].dhcpOptions.privateOptions[0].option", id="dhcp-private-option"),
]


@pytest.mark.parametrize(("changes", "field"), REJECTED)
def test_rule_rejects_at_kubevirt_field(changes, field):
    causes, error = causes_of(make_vmi(*changes))
    assert field in [f for f, _ in causes], causes
    assert error.code == 422
    assert f"{field}:" in error.message


ACCEPTED = [
    pytest.param([], id="baseline"),
    pytest.param([with_domain(firmware={"bootloader": {"efi": {"secureBoot": False}}})], id="efi-without-secureboot"),
    pytest.param([with_domain(firmware=EFI_NO_SMM, features={"smm": {}})], id="secureboot-with-smm"),
    pytest.param([with_disk_and_volume("x", {"lun": {}}, PVC)], id="lun-on-pvc"),
    pytest.param([with_disk_and_volume("x", {"cdrom": {"bus": "sata"}}, CD)], id="sata-cdrom"),
    pytest.param([with_disk_and_volume("x", {"disk": {"bus": "virtio", "pciAddress": "0000:00:05.0"}}, CD)],
                 id="virtio-pci-address"),
    pytest.param([with_volume({"name": "dump", "memoryDump": {"claimName": "c"}})], id="memory-dump-needs-no-disk"),
    pytest.param([with_domain(resources={"requests": {"memory": "1Gi"}}), without("domain", "memory")],
                 id="memory-from-requests"),
    pytest.param([with_domain(memory={"guest": "4Mi", "hugepages": {"pageSize": "2Mi"}})], id="hugepages-multiple"),
    pytest.param([with_pod_network(ports=[{"name": "http", "port": 80, "protocol": "TCP"}]),
                  with_spec(readinessProbe={"httpGet": {"port": 80}})], id="masquerade-with-port-and-http-probe"),
    pytest.param([with_spec(hostname="db-1", subdomain="svc.example", dnsPolicy="None",
                            dnsConfig={"nameservers": ["10.0.0.10"], "searches": ["example.org"]})],
                 id="hostname-and-dns"),
    pytest.param([with_spec(startStrategy="Paused")], id="start-paused"),
    pytest.param([with_spec(evictionStrategy="LiveMigrate")], id="eviction-live-migrate"),
    pytest.param([with_disk_and_volume("ci", {"disk": {}}, {"cloudInitNoCloud": {"userDataBase64": "I2Nsb3Vk"}})],
                 id="cloud-init-base64"),
    pytest.param([with_disk_and_volume("ci", {"disk": {}}, {"cloudInitNoCloud": {"secretRef": {"name": "s"}}}),
                  with_spec(accessCredentials=[{"sshPublicKey": {"source": {"secret": {"secretName": "k"}},
                                                                 "propagationMethod": {"noCloud": {}}}}])],
                 id="ssh-key-through-nocloud"),
    pytest.param([with_domain(machine={"type": "pc-q35-rhel9.2.0"})], id="versioned-q35"),
    pytest.param([with_domain(cpu={"dedicatedCpuPlacement": True, "isolateEmulatorThread": True, "cores": 2})],
                 id="dedicated-cpus"),
]


@pytest.mark.parametrize("changes", ACCEPTED)
def test_valid_neighbours_are_accepted(changes):
    result = admit(VIRTUAL_MACHINE_INSTANCE, make_vmi(*changes), operation="CREATE")
    assert result.obj["kind"] == "VirtualMachineInstance"


def test_every_cause_is_reported_not_only_the_first():
    causes, error = causes_of(make_vmi(with_spec(hostname="Bad_Host", evictionStrategy="X"),
                                       with_disk({"name": "ghost"})))
    fields = [f for f, _ in causes]
    assert {"spec.hostname", "spec.evictionStrategy", "spec.domain.devices.disks[1].name"} <= set(fields)
    assert error.to_status()["details"]["kind"] == "VirtualMachineInstance"


def test_reserved_labels_are_refused_for_users_but_allowed_for_kubevirt():
    vmi = make_vmi()
    vmi["metadata"]["labels"] = {"kubevirt.io/nodeName": "node-1"}
    causes, _ = causes_of(vmi)
    assert causes == [("metadata.labels", "FieldValueForbidden")]
    admitted = admit(VIRTUAL_MACHINE_INSTANCE, vmi, operation="CREATE", trusted=True)
    assert admitted.obj["metadata"]["labels"] == {"kubevirt.io/nodeName": "node-1"}


def test_hostdisk_needs_its_feature_gate():
    from shared.admission import ClusterConfig

    vmi = make_vmi(with_disk_and_volume("h", {"disk": {}}, {"hostDisk": {"path": "/d.img", "type": "DiskOrCreate",
                                                                          "capacity": "1Gi"}}))
    admit(VIRTUAL_MACHINE_INSTANCE, vmi, operation="CREATE")
    with pytest.raises(Invalid) as info:
        admit(VIRTUAL_MACHINE_INSTANCE, vmi, operation="CREATE", cluster=ClusterConfig(feature_gates=frozenset()))
    assert [c.field for c in info.value.causes] == ["spec.volumes[1].hostDisk"]
