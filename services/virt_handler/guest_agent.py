"""Status from inside the guest, through the QEMU guest agent (``org.qemu.guest_agent.0``).

Owns the translation of qemu-ga answers into KubeVirt's VMI status fields
(``pkg/virt-launcher/virtwrap/agent-poller``, ``pkg/virt-handler``):

- ``guest-get-osinfo`` -> ``status.guestOSInfo`` {name, id, prettyName, version, versionId,
  kernelRelease, kernelVersion, machine};
- ``guest-network-get-interfaces`` + the domain's NICs -> ``status.interfaces[]`` {name,
  interfaceName, mac, ipAddress, ipAddresses, infoSource, queueCount, linkState}: guest
  interfaces are matched to the VMI's interfaces by MAC; loopback and IPv6 link-local
  addresses are left out, as KubeVirt does;
- the ``guestosinfo`` subresource body (``VirtualMachineInstanceGuestAgentInfo``).

The compute_* functions are pure; ``fetch_*`` ask the agent through the Hypervisor.
"""

from __future__ import annotations

from typing import Any

from services.virt_handler.hypervisor import Hypervisor, HypervisorError

OS_INFO_FIELDS = {"name": "name", "id": "id", "pretty-name": "prettyName", "version": "version",
                  "version-id": "versionId", "kernel-release": "kernelRelease",
                  "kernel-version": "kernelVersion", "machine": "machine"}


def compute_guest_os_info(osinfo: dict | None) -> dict:
    """qemu-ga ``guest-get-osinfo`` -> KubeVirt ``GuestOSInfo`` (unknown keys dropped)."""
    return {ours: (osinfo or {})[theirs] for theirs, ours in OS_INFO_FIELDS.items() if (osinfo or {}).get(theirs)}


def _is_reported_ip(address: str) -> bool:
    return not address.lower().startswith("fe80:") and address not in ("127.0.0.1", "::1")


def compute_interfaces(domain_nics: list[tuple[str, str]], guest_nics: list[dict] | None) -> list[dict]:
    """``status.interfaces`` from the domain's ``(name, mac)`` NICs and qemu-ga's interface list.

    Each domain NIC gives one entry (``infoSource`` ``domain``, plus ``guest-agent`` when the
    guest reports the same MAC); guest NICs with unknown MACs (except loopback) are appended
    with ``infoSource`` ``guest-agent``.
    """
    by_mac = {}
    for nic in guest_nics or []:
        mac = (nic.get("hardware-address") or "").lower()
        if nic.get("name") == "lo" or mac in ("", "00:00:00:00:00:00"):
            continue
        by_mac[mac] = nic
    entries = []
    for name, mac in domain_nics:
        entry: dict[str, Any] = {"name": name, "mac": mac, "infoSource": "domain", "queueCount": 1,
                                 "linkState": "up", "podInterfaceName": "eth0"}
        guest = by_mac.pop(mac.lower(), None)
        if guest is not None:
            entry.update(_guest_fields(guest))
            entry["infoSource"] = "domain, guest-agent"
        entries.append(entry)
    for mac, guest in sorted(by_mac.items()):
        entries.append({"mac": mac, "infoSource": "guest-agent", **_guest_fields(guest)})
    return entries


def _guest_fields(nic: dict) -> dict:
    addresses = [a.get("ip-address") for a in nic.get("ip-addresses") or []
                 if a.get("ip-address") and _is_reported_ip(a["ip-address"])]
    fields: dict[str, Any] = {"interfaceName": nic.get("name", "")}
    if addresses:
        fields["ipAddress"] = addresses[0]
        fields["ipAddresses"] = addresses
    return fields


def compute_guest_agent_info(info: dict | None, osinfo: dict | None, hostname: dict | None,
                             timezone: dict | None, users: list | None, filesystems: list | None) -> dict:
    """The ``guestosinfo`` subresource body (KubeVirt ``VirtualMachineInstanceGuestAgentInfo``)
    from qemu-ga ``guest-info``, ``guest-get-osinfo``, ``guest-get-host-name``,
    ``guest-get-timezone``, ``guest-get-users`` and ``guest-get-fsinfo`` answers (None = the
    agent did not answer that one)."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "VirtualMachineInstanceGuestAgentInfo",
                            "metadata": {}}
    if info:
        body["guestAgentVersion"] = info.get("version", "")
        body["supportedCommands"] = [{"name": c.get("name"), "enabled": bool(c.get("enabled"))}
                                     for c in info.get("supported_commands") or []]
    if hostname:
        body["hostname"] = hostname.get("host-name", "")
    body["os"] = compute_guest_os_info(osinfo)
    if timezone:
        body["timezone"] = f"{timezone.get('zone', '')}, {timezone.get('offset', 0)}"
    if users is not None:
        body["userList"] = [{"userName": u.get("user", ""), "domain": u.get("domain", ""),
                             "loginTime": u.get("login-time", 0)} for u in users]
    if filesystems is not None:
        body["fsInfo"] = {"disks": [{"diskName": f.get("name", ""), "mountPoint": f.get("mountpoint", ""),
                                     "fileSystemType": f.get("type", ""),
                                     "usedBytes": f.get("used-bytes", 0), "totalBytes": f.get("total-bytes", 0)}
                                    for f in filesystems]}
    return body


async def _ask(hv: Hypervisor, name: str, command: str) -> Any:
    try:
        return await hv.agent_command(name, command)
    except HypervisorError:
        return None


async def fetch_guest_status(hv: Hypervisor, name: str) -> dict:
    """The status fields the guest agent can tell for domain ``name`` (empty when it answers
    nothing): ``guestOSInfo`` and ``interfaces``."""
    extra: dict[str, Any] = {}
    osinfo = await _ask(hv, name, "guest-get-osinfo")
    if osinfo:
        extra["guestOSInfo"] = compute_guest_os_info(osinfo)
    nics = await _ask(hv, name, "guest-network-get-interfaces")
    if nics is not None:
        try:
            extra["interfaces"] = compute_interfaces(await hv.domain_interfaces(name), nics)
        except HypervisorError:
            pass
    return extra


async def fetch_guest_agent_info(hv: Hypervisor, name: str) -> dict:
    """The ``guestosinfo`` subresource body for domain ``name`` (see ``compute_guest_agent_info``)."""
    answers = [await _ask(hv, name, c) for c in ("guest-info", "guest-get-osinfo", "guest-get-host-name",
                                                 "guest-get-timezone", "guest-get-users", "guest-get-fsinfo")]
    return compute_guest_agent_info(*answers)
