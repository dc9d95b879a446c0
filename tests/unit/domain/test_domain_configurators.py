"""Table tests for each configurator of the VMI -> domain conversion (rules from KubeVirt's
converter, ../shared/docs/kubevirt-api.md §7)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.virt_handler.domain import (CONFIGURATORS, DomainConversionError, PortForward, compute_domain_xml,
                                          domain_name)
from services.virt_handler.domain.quantity import parse_quantity

QEMU = "{http://libvirt.org/schemas/domain/qemu/1.0}"


# --- VMI builders -------------------------------------------------------------------------------
def with_disk(name, *, device="disk", volume=None, **disk_fields):
    target = {k: disk_fields.pop(k) for k in ("bus", "readonly", "tray") if k in disk_fields}

    def modify(vmi):
        vmi["spec"]["domain"]["devices"].setdefault("disks", []).append({"name": name, device: target, **disk_fields})
        vmi["spec"]["volumes"].append({"name": name, **(volume or {"containerDisk": {
            "image": "registry:5000/kubevirt/cirros-container-disk-demo:devel"}})})
    return modify


def with_domain(**fields):
    def modify(vmi):
        vmi["spec"]["domain"].update(fields)
    return modify


def with_devices(**fields):
    def modify(vmi):
        vmi["spec"]["domain"]["devices"].update(fields)
    return modify


def with_spec(**fields):
    def modify(vmi):
        vmi["spec"].update(fields)
    return modify


def convert(vmi, ctx) -> ET.Element:
    return ET.fromstring(compute_domain_xml(vmi, ctx))


def test_configurators_run_in_the_documented_order():
    names = [c.__name__ for c in CONFIGURATORS]
    assert names.index("configure_firmware") < names.index("configure_features")  # secure boot's SMM survives
    assert names.index("configure_disks") < names.index("configure_controllers")  # SCSI controller needs disks
    assert len(set(names)) == len(names)


# --- identity -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("domain_type",), [pytest.param(t, id=t) for t in ("kvm", "qemu", "test")])
def test_domain_type_comes_from_the_context(domain_type, make_vmi, make_ctx):
    assert convert(make_vmi(), make_ctx(domain_type=domain_type)).get("type") == domain_type


def test_domain_name_is_namespace_underscore_name(make_vmi, make_ctx):
    root = convert(make_vmi(name="vm1", namespace="team-a"), make_ctx())
    assert root.findtext("name") == "team-a_vm1" == domain_name("team-a", "vm1")
    assert root.find("metadata/{http://kubevirt.io}kubevirt/{http://kubevirt.io}namespace").text == "team-a"


@pytest.mark.parametrize(("modifiers", "expected"), [
    pytest.param([with_domain(firmware={"uuid": "0b9c1b0e-9d7b-4a53-9a8f-31d7ec1b4b11"})],
                 "0b9c1b0e-9d7b-4a53-9a8f-31d7ec1b4b11", id="firmware-uuid-wins"),
    pytest.param([], "uid", id="falls-back-to-metadata-uid"),
])
def test_domain_uuid(modifiers, expected, make_vmi, make_ctx):
    vmi = make_vmi(*modifiers)
    want = vmi["metadata"]["uid"] if expected == "uid" else expected
    root = convert(vmi, make_ctx())
    assert root.findtext("uuid") == want
    assert root.find("sysinfo/system/entry[@name='uuid']").text == want


def test_reboot_policy_terminate_destroys_on_reboot(make_vmi, make_ctx):
    assert convert(make_vmi(with_domain(rebootPolicy="Terminate")), make_ctx()).findtext("on_reboot") == "destroy"


# --- memory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("domain_fields", "expected_bytes"), [
    pytest.param({"memory": {"guest": "128Mi"}}, 128 * 2**20, id="guest-Mi"),
    pytest.param({"memory": {"guest": "1024M"}}, 1024 * 10**6, id="guest-decimal-M"),
    pytest.param({"memory": {"guest": "1Gi"}, "resources": {"requests": {"memory": "2Gi"}}}, 2**30,
                 id="guest-beats-requests"),
    pytest.param({"memory": None, "resources": {"requests": {"memory": "64Mi"}}}, 64 * 2**20, id="requests"),
    pytest.param({"memory": None, "resources": {"limits": {"memory": "8192Ki"}}}, 8388608, id="limits"),
])
def test_memory_in_bytes(domain_fields, expected_bytes, make_vmi, make_ctx):
    root = convert(make_vmi(with_domain(**domain_fields)), make_ctx())
    assert root.find("memory").get("unit") == "b"
    assert int(root.findtext("memory")) == expected_bytes


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("100M", 100_000_000, id="M"), pytest.param("2Gi", 2 * 2**30, id="Gi"),
    pytest.param("1.5Gi", 1610612736, id="fraction"), pytest.param(1024, 1024, id="int"),
    pytest.param("1e3", 1000, id="exponent"),
])
def test_parse_quantity(value, expected):
    assert parse_quantity(value, "f") == expected


def test_missing_memory_is_invalid_spec(make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_domain(memory=None)), make_ctx())
    assert err.value.reason == "InvalidSpec" and "spec.domain.memory.guest" in err.value.message


# --- cpu ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("domain_fields", "topology", "vcpus"), [
    pytest.param({}, (1, 1, 1), 1, id="default-one"),
    pytest.param({"cpu": {"cores": 2}}, (1, 2, 1), 2, id="cores"),
    pytest.param({"cpu": {"sockets": 2, "cores": 2, "threads": 2}}, (2, 2, 2), 8, id="all"),
    pytest.param({"resources": {"requests": {"cpu": "1500m"}}}, (2, 1, 1), 2, id="request-rounds-up-to-sockets"),
    pytest.param({"resources": {"limits": {"cpu": 3}, "requests": {"cpu": 1}}}, (3, 1, 1), 3, id="limit-first"),
])
def test_cpu_topology(domain_fields, topology, vcpus, make_vmi, make_ctx):
    root = convert(make_vmi(with_domain(**domain_fields)), make_ctx())
    top = root.find("cpu/topology")
    assert (int(top.get("sockets")), int(top.get("cores")), int(top.get("threads"))) == topology
    assert int(root.findtext("vcpu")) == vcpus


@pytest.mark.parametrize(("domain_type", "model", "mode", "model_name", "features"), [
    pytest.param("kvm", None, "host-model", None, {"mpx": "disable"}, id="kvm-default-host-model-no-mpx"),
    pytest.param("kvm", "host-passthrough", "host-passthrough", None, {}, id="kvm-passthrough"),
    pytest.param("qemu", None, None, None, {}, id="tcg-default-qemu-cpu"),
    pytest.param("qemu", "host-passthrough", "maximum", None, {}, id="tcg-passthrough-is-maximum"),
    pytest.param("qemu", "Skylake-Client", "custom", "Skylake-Client", {"vmx": "require"}, id="named-model"),
])
def test_cpu_model(domain_type, model, mode, model_name, features, make_vmi, make_ctx):
    cpu = {"model": model} if model else {}
    if model_name:
        cpu["features"] = [{"name": "vmx"}]
    root = convert(make_vmi(with_domain(cpu=cpu)), make_ctx(domain_type=domain_type))
    assert root.find("cpu").get("mode") == mode
    assert root.findtext("cpu/model") == model_name
    assert {f.get("name"): f.get("policy") for f in root.findall("cpu/feature")} == features


# --- firmware / os --------------------------------------------------------------------------------
@pytest.mark.parametrize(("domain_fields", "machine"), [
    pytest.param({}, "q35", id="default-q35"),
    pytest.param({"machine": {"type": "pc-q35-7.2"}}, "pc-q35-7.2", id="explicit"),
])
def test_machine_type(domain_fields, machine, make_vmi, make_ctx):
    os_type = convert(make_vmi(with_domain(**domain_fields)), make_ctx()).find("os/type")
    assert (os_type.get("arch"), os_type.get("machine"), os_type.text) == ("x86_64", machine, "hvm")


def test_bios_use_serial(make_vmi, make_ctx):
    root = convert(make_vmi(with_domain(firmware={"bootloader": {"bios": {"useSerial": True}}})), make_ctx())
    assert root.find("os/bios").get("useserial") == "yes"


@pytest.mark.parametrize(("efi", "code", "template", "secure", "smm"), [
    pytest.param({"secureBoot": False}, "OVMF_CODE.fd", "OVMF_VARS.fd", "no", False, id="efi"),
    pytest.param({}, "OVMF_CODE.secboot.fd", "OVMF_VARS.secboot.fd", "yes", True, id="secure-boot-default"),
])
def test_efi_loader_and_nvram(efi, code, template, secure, smm, make_vmi, make_ctx, ovmf_dir):
    ctx = make_ctx()
    root = convert(make_vmi(with_domain(firmware={"bootloader": {"efi": efi}})), ctx)
    loader = root.find("os/loader")
    assert (loader.text, loader.get("secure"), loader.get("type"), loader.get("readonly")) == (
        str(ovmf_dir / code), secure, "pflash", "yes")
    assert root.find("os/nvram").get("template") == str(ovmf_dir / template)
    assert root.findtext("os/nvram") == str(ctx.vmi_dir / "nvram.fd")
    assert (root.find("features/smm") is not None) == smm


@pytest.mark.parametrize(("efi", "kind"), [
    pytest.param({"secureBoot": False}, "EFI needs OVMF_CODE.fd", id="efi"),
    pytest.param({"secureBoot": True}, "EFI secure boot needs OVMF_CODE.secboot.fd", id="secure-boot"),
])
def test_efi_without_ovmf_is_firmware_unavailable(efi, kind, make_vmi, make_ctx, tmp_path):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_domain(firmware={"bootloader": {"efi": efi}})),
                           make_ctx(ovmf_dirs=(tmp_path / "no-ovmf",)))
    assert err.value.reason == "FirmwareUnavailable"
    assert kind in err.value.message and "spec.domain.firmware.bootloader.efi" in err.value.message


def test_secure_boot_with_smm_disabled_is_invalid(make_vmi, make_ctx):
    vmi = make_vmi(with_domain(firmware={"bootloader": {"efi": {}}}, features={"smm": {"enabled": False}}))
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(vmi, make_ctx())
    assert err.value.reason == "InvalidSpec"


def test_kernel_boot_from_a_container_image(make_vmi, make_ctx, image_store):
    image = image_store.resolve("registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel")
    vmi = make_vmi(with_domain(firmware={"kernelBoot": {"kernelArgs": "console=ttyS0 root=/dev/vda", "container": {
        "image": image.ref, "kernelPath": "/boot/vmlinuz-virt", "initrdPath": "/boot/initramfs-virt"}}}))
    root = convert(vmi, make_ctx())
    assert root.findtext("os/kernel") == str(image.root / "boot/vmlinuz-virt")
    assert root.findtext("os/initrd") == str(image.root / "boot/initramfs-virt")
    assert root.findtext("os/cmdline") == "console=ttyS0 root=/dev/vda"


@pytest.mark.parametrize(("container", "reason_text"), [
    pytest.param({"image": "example.org/missing:1"}, "not found in the local image store", id="image-missing"),
    pytest.param({"image": "registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel", "kernelPath": "/boot/nope"},
                 "has no file /boot/nope", id="kernel-path-missing"),
])
def test_kernel_boot_image_problems_are_err_image_pull(container, reason_text, make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_domain(firmware={"kernelBoot": {"container": container}})), make_ctx())
    assert err.value.reason == "ErrImagePull" and reason_text in err.value.message


def test_container_disk_with_kernel_metadata_boots_its_kernel(make_vmi, make_ctx, image_store):
    image = image_store.resolve("kubevirt-py/demo-guest:latest")
    root = convert(make_vmi(with_disk("root", bus="virtio", volume={"containerDisk": {"image": image.ref}})),
                   make_ctx())
    assert root.findtext("os/kernel") == str(image.kernel)
    assert root.findtext("os/initrd") == str(image.initrd)
    assert root.findtext("os/cmdline") == "console=ttyS0"


def test_paused_start_strategy_adds_a_boot_menu(make_vmi, make_ctx):
    menu = convert(make_vmi(with_spec(startStrategy="Paused")), make_ctx()).find("os/bootmenu")
    assert (menu.get("enable"), menu.get("timeout")) == ("yes", "10000")


# --- features / clock -------------------------------------------------------------------------------
@pytest.mark.parametrize(("features", "present", "absent"), [
    pytest.param({}, {"acpi", "vmport"}, {"apic", "smm"}, id="defaults"),
    pytest.param({"acpi": {"enabled": False}}, {"vmport"}, {"acpi"}, id="acpi-off"),
    pytest.param({"apic": {}, "smm": {"enabled": True}}, {"acpi", "apic", "smm"}, set(), id="apic-smm-on"),
])
def test_features(features, present, absent, make_vmi, make_ctx):
    root = convert(make_vmi(with_domain(features=features)), make_ctx())
    names = {child.tag for child in root.find("features")}
    assert present <= names and not (absent & names)
    assert root.find("features/vmport").get("state") == "off"


@pytest.mark.parametrize(("clock", "attrs", "timers"), [
    pytest.param({}, {"offset": "utc"}, {}, id="default-utc"),
    pytest.param({"utc": {"offsetSeconds": 3600}}, {"offset": "utc", "adjustment": "3600"}, {}, id="utc-offset"),
    pytest.param({"timezone": "Europe/Berlin"}, {"offset": "timezone", "timezone": "Europe/Berlin"}, {}, id="tz"),
    pytest.param({"timer": {"rtc": {"tickPolicy": "catchup"}, "hpet": {"present": False}}}, {"offset": "utc"},
                 {"rtc": ("yes", "catchup"), "hpet": ("no", None)}, id="timers"),
])
def test_clock(clock, attrs, timers, make_vmi, make_ctx):
    root = convert(make_vmi(with_domain(clock=clock)), make_ctx())
    assert dict(root.find("clock").attrib) == attrs
    assert {t.get("name"): (t.get("present"), t.get("tickpolicy")) for t in root.findall("clock/timer")} == timers


# --- disks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("disks", "targets"), [
    pytest.param([("a", "virtio"), ("b", "virtio")], ["vda", "vdb"], id="virtio"),
    pytest.param([("a", "sata"), ("b", "virtio"), ("c", "scsi")], ["sda", "vda", "sdb"], id="mixed-buses"),
    pytest.param([("a", None)], ["sda"], id="amd64-default-bus-sata"),
])
def test_disk_targets_per_bus(disks, targets, make_vmi, make_ctx):
    mods = [with_disk(n, **({"bus": b} if b else {})) for n, b in disks]
    root = convert(make_vmi(*mods), make_ctx())
    assert [d.find("target").get("dev") for d in root.findall("devices/disk")] == targets
    assert [d.find("alias").get("name") for d in root.findall("devices/disk")] == [f"ua-{n}" for n, _ in disks]


def test_twenty_eight_virtio_disks_continue_with_aa(make_vmi, make_ctx):
    mods = [with_disk(f"d{i}", bus="virtio", volume={"emptyDisk": {"capacity": "1Mi"}}) for i in range(28)]
    targets = [d.find("target").get("dev") for d in convert(make_vmi(*mods), make_ctx()).findall("devices/disk")]
    assert targets[25:] == ["vdz", "vdaa", "vdab"]


def test_recorded_volume_status_targets_are_kept(make_vmi, make_ctx):
    vmi = make_vmi(with_disk("a", bus="virtio"), with_disk("b", bus="virtio"))
    vmi["status"] = {"volumeStatus": [{"name": "b", "target": "vda"}]}
    root = convert(vmi, make_ctx())
    assert {d.find("alias").get("name"): d.find("target").get("dev") for d in root.findall("devices/disk")} == {
        "ua-a": "vdb", "ua-b": "vda"}


def test_scsi_disks_get_a_controller_and_drive_addresses(make_vmi, make_ctx):
    root = convert(make_vmi(with_disk("a", bus="scsi"), with_disk("b", bus="scsi")), make_ctx())
    assert [d.find("address").get("unit") for d in root.findall("devices/disk")] == ["0", "1"]
    assert root.find("devices/controller[@type='scsi']").get("model") == "virtio-non-transitional"


@pytest.mark.parametrize(("direct_io", "cache", "expected"), [
    pytest.param(True, None, "none", id="odirect-default-none"),
    pytest.param(False, None, "writethrough", id="no-odirect-default-writethrough"),
    pytest.param(False, "writeback", "writeback", id="explicit"),
])
def test_cache_mode(direct_io, cache, expected, make_vmi, make_ctx):
    fields = {"cache": cache} if cache else {}
    root = convert(make_vmi(with_disk("a", bus="virtio", **fields)), make_ctx(direct_io=direct_io))
    assert root.find("devices/disk/driver").get("cache") == expected


def test_cache_none_without_odirect_is_an_error(make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_disk("a", bus="virtio", cache="none")), make_ctx(direct_io=False))
    assert err.value.reason == "CacheModeUnsupported" and "disks[0].cache" in err.value.message


def test_disk_driver_and_flags(make_vmi, make_ctx):
    vmi = make_vmi(with_disk("a", bus="virtio", io="threads", errorPolicy="report", serial="SN1", bootOrder=1,
                             shareable=True),
                   with_disk("cd", device="cdrom", bus="sata"))
    disk, cdrom = convert(vmi, make_ctx()).findall("devices/disk")
    driver = disk.find("driver")
    assert (driver.get("io"), driver.get("error_policy"), driver.get("discard")) == ("threads", "report", "unmap")
    assert (disk.get("model"), disk.findtext("serial"), disk.find("boot").get("order")) == (
        "virtio-non-transitional", "SN1", "1")
    assert disk.find("shareable") is not None and disk.find("readonly") is None
    assert (cdrom.get("device"), cdrom.find("target").get("tray"), cdrom.get("model")) == ("cdrom", "closed", None)
    assert cdrom.find("readonly") is not None and cdrom.find("driver").get("discard") is None


@pytest.mark.parametrize(("volume", "file_name", "fmt", "backing"), [
    pytest.param({"containerDisk": {"image": "registry:5000/kubevirt/cirros-container-disk-demo:devel"}},
                 "vmi/disk-v.qcow2", "qcow2", "image", id="containerDisk-overlay"),
    pytest.param({"emptyDisk": {"capacity": "2Gi"}}, "vmi/empty-v.qcow2", "qcow2", None, id="emptyDisk"),
    pytest.param({"hostDisk": {"path": "/var/data/disk.img", "type": "DiskOrCreate", "capacity": "1Gi"}},
                 "/var/data/disk.img", "raw", None, id="hostDisk"),
    pytest.param({"persistentVolumeClaim": {"claimName": "disk-alpine"}}, "pvcs/default/disk-alpine/disk.img",
                 "raw", None, id="pvc"),
    pytest.param({"ephemeral": {"persistentVolumeClaim": {"claimName": "base"}}}, "vmi/disk-v.qcow2", "qcow2",
                 "pvcs/default/base/disk.img", id="ephemeral-pvc"),
    pytest.param({"cloudInitNoCloud": {"userData": "#!/bin/sh\n"}}, "vmi/noCloud.iso", "raw", None, id="nocloud"),
    pytest.param({"cloudInitConfigDrive": {"userData": "#!/bin/sh\n"}}, "vmi/configdrive.iso", "raw", None,
                 id="configdrive"),
])
def test_volume_sources(volume, file_name, fmt, backing, make_vmi, make_ctx, state_root, image_store):
    ctx = make_ctx()
    disk = convert(make_vmi(with_disk("v", bus="virtio", volume=volume)), ctx).find("devices/disk")
    expected = file_name.replace("vmi/", f"{ctx.vmi_dir}/") if file_name.startswith("vmi/") else (
        file_name if file_name.startswith("/") else str(state_root / file_name))
    assert disk.find("source").get("file") == expected
    assert disk.find("driver").get("type") == fmt
    store_disk = image_store.resolve("registry:5000/kubevirt/cirros-container-disk-demo:devel").disk
    want_backing = {None: None, "image": str(store_disk)}.get(backing, str(state_root / str(backing)))
    got = disk.find("backingStore/source")
    assert (got.get("file") if got is not None else None) == want_backing


@pytest.mark.parametrize(("volume", "reason", "field"), [
    pytest.param({"containerDisk": {"image": "example.org/nope:1"}}, "ErrImagePull", "spec.volumes[0].containerDisk",
                 id="image-not-imported"),
    pytest.param({"persistentVolumeClaim": {"claimName": "missing"}}, "FailedPvcNotFound",
                 "spec.volumes[0].persistentVolumeClaim.claimName", id="pvc-missing"),
    pytest.param({"hostDisk": {"path": "/nonexistent/disk.img", "type": "Disk"}}, "HostDiskNotFound",
                 "spec.volumes[0].hostDisk.path", id="hostdisk-missing"),
    pytest.param({"secret": {"secretName": "s"}}, "UnsupportedVolume", "spec.volumes[0]", id="secret"),
])
def test_volume_errors_on_a_real_node(volume, reason, field, make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_disk("v", bus="virtio", volume=volume)), make_ctx(domain_type="qemu"))
    assert err.value.reason == reason and err.value.message.startswith(field)


def test_existing_pvc_disk_is_used_on_a_real_node(make_vmi, make_ctx, state_root):
    disk_img = state_root / "pvcs" / "default" / "claim1" / "disk.img"
    disk_img.parent.mkdir(parents=True)
    disk_img.write_bytes(b"\0" * 512)
    root = convert(make_vmi(with_disk("v", bus="virtio", volume={"persistentVolumeClaim": {"claimName": "claim1"}})),
                   make_ctx(domain_type="qemu"))
    assert root.find("devices/disk/source").get("file") == str(disk_img)


def test_disk_without_volume_is_invalid(make_vmi, make_ctx):
    vmi = make_vmi(with_disk("a", bus="virtio"))
    vmi["spec"]["volumes"] = []
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(vmi, make_ctx())
    assert err.value.reason == "InvalidSpec" and "disks[0].name" in err.value.message


# --- network ----------------------------------------------------------------------------------------
def test_default_pod_interface_is_user_networking(make_vmi, make_ctx):
    nic = convert(make_vmi(), make_ctx()).find("devices/interface")
    assert nic.get("type") == "user"
    assert (nic.find("model").get("type"), nic.find("alias").get("name"), nic.find("rom").get("enabled")) == (
        "virtio-non-transitional", "ua-default", "no")
    assert nic.find("mac").get("address").startswith("52:54:00:")


@pytest.mark.parametrize(("iface", "checks"), [
    pytest.param({"name": "n", "masquerade": {}, "macAddress": "02:00:00:00:00:01", "model": "e1000"},
                 {"mac": "02:00:00:00:00:01", "model": "e1000"}, id="mac-and-model"),
    pytest.param({"name": "n", "bridge": {}, "bootOrder": 2}, {"boot": "2", "rom": None}, id="boot-order-keeps-rom"),
    pytest.param({"name": "n", "masquerade": {}, "state": "down"}, {"link": "down"}, id="link-down"),
    pytest.param({"name": "n", "masquerade": {}, "state": "absent"}, {"absent": True}, id="absent-skipped"),
])
def test_interface_fields(iface, checks, make_vmi, make_ctx):
    vmi = make_vmi(with_devices(interfaces=[iface]), with_spec(networks=[{"name": "n", "pod": {}}]))
    nic = convert(vmi, make_ctx()).find("devices/interface")
    if checks.get("absent"):
        assert nic is None
        return
    if "mac" in checks:
        assert nic.find("mac").get("address") == checks["mac"]
        assert nic.find("model").get("type") == checks["model"]
    if "boot" in checks:
        assert nic.find("boot").get("order") == checks["boot"] and nic.find("rom") is None
    if "link" in checks:
        assert nic.find("link").get("state") == "down"


def test_port_forwards_give_the_nic_to_qemu_with_hostfwd(make_vmi, make_ctx):
    ctx = make_ctx(domain_type="qemu", port_forwards=(PortForward("TCP", 80, 18080), PortForward("UDP", 53, 15353)))
    root = convert(make_vmi(), ctx)
    assert root.find("devices/interface") is None
    args = [a.get("value") for a in root.findall(f"{QEMU}commandline/{QEMU}arg")]
    assert args[0:2] == ["-netdev",
                         "user,id=ua-default,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=udp:127.0.0.1:15353-:53"]
    assert args[2] == "-device" and args[3].startswith("virtio-net-pci-non-transitional,netdev=ua-default,mac=52:54:00:")


@pytest.mark.parametrize(("interfaces", "networks", "text"), [
    pytest.param([{"name": "m", "bridge": {}}], [{"name": "m", "multus": {"networkName": "x"}}],
                 "not the pod network", id="multus"),
    pytest.param([{"name": "p", "sriov": {}}], [{"name": "p", "pod": {}}], "binding not supported", id="sriov"),
    pytest.param([{"name": "a", "masquerade": {}}, {"name": "b", "masquerade": {}}],
                 [{"name": "a", "pod": {}}, {"name": "b", "pod": {}}], "one interface", id="two-nics"),
])
def test_unsupported_networks(interfaces, networks, text, make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_devices(interfaces=interfaces), with_spec(networks=networks)), make_ctx())
    assert err.value.reason == "UnsupportedNetwork" and text in err.value.message


def test_no_nic_when_pod_interface_autoattach_is_off(make_vmi, make_ctx):
    assert convert(make_vmi(with_devices(autoattachPodInterface=False)), make_ctx()).find("devices/interface") is None


# --- console, agent, balloon, rng, controllers -------------------------------------------------------
def test_serial_console_is_a_pty_logged_to_the_vmi_dir(make_vmi, make_ctx):
    ctx = make_ctx()
    root = convert(make_vmi(), ctx)
    serial = root.find("devices/serial")
    assert serial.get("type") == "pty" and serial.find("target").get("port") == "0"
    assert serial.find("log").get("file") == str(ctx.vmi_dir / "console.log")
    assert root.find("devices/console/target").attrib == {"type": "serial", "port": "0"}


def test_no_serial_console_when_autoattach_is_off(make_vmi, make_ctx):
    root = convert(make_vmi(with_devices(autoattachSerialConsole=False)), make_ctx())
    assert root.find("devices/serial") is None and root.find("devices/console") is None


def test_guest_agent_channel_is_always_there(make_vmi, make_ctx):
    channel = convert(make_vmi(), make_ctx()).find("devices/channel")
    assert channel.get("type") == "unix"
    assert channel.find("target").attrib == {"type": "virtio", "name": "org.qemu.guest_agent.0"}


@pytest.mark.parametrize(("devices", "model", "period"), [
    pytest.param({}, "virtio-non-transitional", "10", id="default"),
    pytest.param({"useVirtioTransitional": True}, "virtio-transitional", "10", id="transitional"),
    pytest.param({"autoattachMemBalloon": False}, "none", None, id="off"),
])
def test_memballoon(devices, model, period, make_vmi, make_ctx):
    balloon = convert(make_vmi(with_devices(**devices)), make_ctx()).find("devices/memballoon")
    assert balloon.get("model") == model
    assert (balloon.find("stats").get("period") if balloon.find("stats") is not None else None) == period


@pytest.mark.parametrize(("devices", "count"), [pytest.param({}, 0, id="absent"),
                                                pytest.param({"rng": {}}, 1, id="present")])
def test_rng_only_when_asked(devices, count, make_vmi, make_ctx):
    rngs = convert(make_vmi(with_devices(**devices)), make_ctx()).findall("devices/rng")
    assert len(rngs) == count
    if count:
        assert rngs[0].findtext("backend") == "/dev/urandom" and rngs[0].find("backend").get("model") == "random"


@pytest.mark.parametrize(("modifiers", "usb_model"), [
    pytest.param([], "none", id="no-usb-device"),
    pytest.param([with_devices(inputs=[{"name": "tablet", "type": "tablet", "bus": "usb"}])], "qemu-xhci",
                 id="usb-tablet"),
])
def test_usb_controller(modifiers, usb_model, make_vmi, make_ctx):
    root = convert(make_vmi(*modifiers), make_ctx())
    assert root.find("devices/controller[@type='usb']").get("model") == usb_model


@pytest.mark.parametrize(("inputs", "expected"), [
    pytest.param([{"name": "t", "type": "tablet"}], [("tablet", "usb", "ua-t")], id="default-usb"),
    pytest.param([{"name": "t", "type": "tablet", "bus": "virtio"}], [("tablet", "virtio", "ua-t")], id="virtio"),
])
def test_input_devices(inputs, expected, make_vmi, make_ctx):
    root = convert(make_vmi(with_devices(inputs=inputs)), make_ctx())
    assert [(i.get("type"), i.get("bus"), i.find("alias").get("name")) for i in root.findall("devices/input")] == \
        expected


def test_input_on_an_unknown_bus_is_invalid(make_vmi, make_ctx):
    with pytest.raises(DomainConversionError) as err:
        compute_domain_xml(make_vmi(with_devices(inputs=[{"name": "t", "bus": "ps2"}])), make_ctx())
    assert err.value.reason == "InvalidSpec" and "inputs[0]" in err.value.message


@pytest.mark.parametrize(("watchdog", "action"), [
    pytest.param({"name": "w", "i6300esb": {}}, "reset", id="default-reset"),
    pytest.param({"name": "w", "i6300esb": {"action": "poweroff"}}, "poweroff", id="poweroff"),
])
def test_watchdog(watchdog, action, make_vmi, make_ctx):
    element = convert(make_vmi(with_devices(watchdog=watchdog)), make_ctx()).find("devices/watchdog")
    assert (element.get("model"), element.get("action"), element.find("alias").get("name")) == (
        "i6300esb", action, "ua-w")


def test_every_table_case_domain_is_accepted_by_the_test_driver(make_vmi, make_ctx, libvirt_test_conn):
    vmi = make_vmi(with_disk("a", bus="scsi"), with_disk("b", bus="sata", volume={"emptyDisk": {"capacity": "1Gi"}}),
                   with_disk("c", device="cdrom", volume={"cloudInitNoCloud": {"userData": "x"}}),
                   with_domain(cpu={"cores": 2, "model": "host-passthrough"}, clock={"timer": {"rtc": {}}},
                               firmware={"bootloader": {"efi": {}}}, features={"apic": {}}),
                   with_devices(rng={}, inputs=[{"name": "tab", "type": "tablet"}],
                                watchdog={"name": "wd", "i6300esb": {}}))
    domain = libvirt_test_conn.defineXML(compute_domain_xml(vmi, make_ctx()))
    try:
        domain.create()
        assert domain.info()[3] == 2  # vCPUs
        domain.destroy()
    finally:
        domain.undefine()
