"""Guest agent answers (qemu-ga JSON as the demo guest's agent sends it) -> KubeVirt status fields."""

import pytest

from services.virt_handler.guest_agent import compute_guest_agent_info, compute_guest_os_info, compute_interfaces

OSINFO = {"name": "kubevirt-py demo", "kernel-release": "6.1.0-57-cloud-amd64", "version": "1",
          "pretty-name": "kubevirt-py demo guest", "version-id": "1", "kernel-version": "#1 SMP Debian",
          "machine": "x86_64", "id": "kubevirt-py-demo", "variant": "ignored"}
GUEST_NICS = [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
    {"name": "eth0", "hardware-address": "52:54:00:AA:BB:CC",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24},
                      {"ip-address-type": "ipv6", "ip-address": "fe80::5054:ff:feaa:bbcc", "prefix": 64},
                      {"ip-address-type": "ipv6", "ip-address": "fec0::5054:ff:feaa:bbcc", "prefix": 64}]},
    {"name": "eth1", "hardware-address": "52:54:00:11:22:33", "ip-addresses": []},
]


def test_os_info_uses_kubevirt_field_names():
    assert compute_guest_os_info(OSINFO) == {
        "name": "kubevirt-py demo", "id": "kubevirt-py-demo", "prettyName": "kubevirt-py demo guest",
        "version": "1", "versionId": "1", "kernelRelease": "6.1.0-57-cloud-amd64",
        "kernelVersion": "#1 SMP Debian", "machine": "x86_64"}
    assert compute_guest_os_info(None) == {}


def test_interfaces_match_guest_nics_to_domain_nics_by_mac():
    entries = compute_interfaces([("default", "52:54:00:aa:bb:cc")], GUEST_NICS)
    assert entries[0] == {"name": "default", "mac": "52:54:00:aa:bb:cc", "infoSource": "domain, guest-agent",
                          "queueCount": 1, "linkState": "up", "podInterfaceName": "eth0", "interfaceName": "eth0",
                          "ipAddress": "10.0.2.15", "ipAddresses": ["10.0.2.15", "fec0::5054:ff:feaa:bbcc"]}
    assert entries[1] == {"mac": "52:54:00:11:22:33", "infoSource": "guest-agent", "interfaceName": "eth1"}
    assert len(entries) == 2  # loopback left out


@pytest.mark.parametrize("guest_nics, expected_source", [
    pytest.param(None, "domain", id="agent-not-answering"),
    pytest.param([], "domain", id="agent-reports-nothing"),
])
def test_domain_nics_are_listed_without_the_agent(guest_nics, expected_source):
    (entry,) = compute_interfaces([("default", "52:54:00:aa:bb:cc")], guest_nics)
    assert entry["infoSource"] == expected_source and "ipAddress" not in entry


def test_guestosinfo_body():
    body = compute_guest_agent_info(
        {"version": "7.2.0", "supported_commands": [{"name": "guest-ping", "enabled": True}]}, OSINFO,
        {"host-name": "demo"}, {"zone": "UTC", "offset": 0}, [], [{"name": "vda", "mountpoint": "/", "type": "ext4",
                                                                  "used-bytes": 10, "total-bytes": 100}])
    assert body["kind"] == "VirtualMachineInstanceGuestAgentInfo"
    assert body["guestAgentVersion"] == "7.2.0"
    assert body["supportedCommands"] == [{"name": "guest-ping", "enabled": True}]
    assert (body["hostname"], body["timezone"]) == ("demo", "UTC, 0")
    assert body["os"]["id"] == "kubevirt-py-demo"
    assert body["fsInfo"]["disks"][0] == {"diskName": "vda", "mountPoint": "/", "fileSystemType": "ext4",
                                          "usedBytes": 10, "totalBytes": 100}
    assert body["userList"] == []
