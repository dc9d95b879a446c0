"""The domain operations of the gateway: define/start, look up, stop, pause, agent, statistics
(and, inherited from ``snapshot`` and ``migration``, freeze/thaw, backup and live-migration calls).

Each method runs its libvirt calls through ``LibvirtConnection._call`` (thread pool, timeout,
error mapping); domain XML is computed elsewhere (``services.virt_handler.domain``) and only
passed through.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import libvirt
import libvirt_qemu

from services.virt_handler.hypervisor.snapshot import SnapshotOperations
from services.virt_handler.hypervisor_types import (
    DomainInfo,
    HypervisorError,
    NodeInfo,
    compute_flat_stats,
    parse_host_cpu,
)


class Hypervisor(SnapshotOperations):
    """Async facade over one libvirt connection (``qemu:///system``, ``test:///default``, ...).

    ``max_workers`` bounds the threads running libvirt calls; ``call_timeout`` (seconds) bounds
    each call. Methods raise ``HypervisorError`` (``DomainNotFound`` for a missing domain where
    the method needs one). A lost connection is re-opened on the next call and announced to
    event subscribers as a ``Reconnected`` event.
    """

    async def define_and_start(self, xml: str, *, paused: bool = False) -> DomainInfo:
        """Define the persistent domain ``xml`` and start it (``paused``: start with CPUs stopped,
        KubeVirt's ``startStrategy: Paused``). When the start fails the definition is removed
        again so nothing is left behind. Raises ``HypervisorError`` (``InvalidDomain``,
        ``AlreadyExists``, ...)."""
        def blocking() -> DomainInfo:
            with self._span("defineXML"):
                dom = self._conn.defineXML(xml)
            try:
                if paused:
                    try:
                        with self._span("createWithFlags"):
                            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
                    except libvirt.libvirtError as err:
                        if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                            raise
                        with self._span("create"):
                            dom.create()  # drivers without START_PAUSED (test://)
                        with self._span("suspend"):
                            dom.suspend()
                else:
                    with self._span("create"):
                        dom.create()
            except libvirt.libvirtError:
                try:
                    dom.undefine()
                except libvirt.libvirtError:
                    pass
                raise
            return self._describe(dom)
        return await self._call(blocking)

    async def get_domain(self, name: str) -> DomainInfo | None:
        """The domain called ``name``, or None when there is none."""
        def blocking() -> DomainInfo | None:
            try:
                return self._describe(self._lookup(name))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
        return await self._call(blocking)

    async def list_domains(self) -> list[DomainInfo]:
        """Every domain on the connection, running or only defined (foreign ones have ``uid`` None)."""
        def blocking() -> list[DomainInfo]:
            infos = []
            for dom in self._conn.listAllDomains(0):
                try:
                    infos.append(self._describe(dom))
                except libvirt.libvirtError as err:
                    if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # vanished while listing
                        raise
            return infos
        return await self._call(blocking)

    async def get_domain_xml(self, name: str) -> str:
        """The live XML description of domain ``name``. Raises ``DomainNotFound``."""
        return await self._call(lambda: self._lookup(name).XMLDesc(0))

    async def is_agent_connected(self, name: str) -> bool:
        """Whether the guest agent channel ``org.qemu.guest_agent.0`` of a running domain is
        connected (its live XML says ``state='connected'``). False when there is no such channel.
        Raises ``DomainNotFound``."""
        def blocking() -> bool:
            root = ET.fromstring(self._lookup(name).XMLDesc(0))
            for target in root.findall("./devices/channel/target"):
                if target.get("name") == "org.qemu.guest_agent.0":
                    return target.get("state") == "connected"
            return False
        return await self._call(blocking)

    async def agent_command(self, name: str, command: str, arguments: dict | None = None, *,
                            timeout: int = 5) -> Any:
        """Run QEMU guest agent ``command`` (e.g. ``guest-get-osinfo``) in domain ``name`` and
        return its ``return`` value. Raises ``DomainNotFound``, ``HypervisorError`` with reason
        ``AgentUnresponsive`` (no agent, or it did not answer within ``timeout`` s) or
        ``Unsupported`` (drivers without agents, e.g. ``test://``)."""
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}

        def blocking() -> Any:
            answer = libvirt_qemu.qemuAgentCommand(self._lookup(name), json.dumps(request), timeout, 0)
            return json.loads(answer).get("return")
        return await self._call(blocking, timeout=self.call_timeout + timeout)

    async def domain_interfaces(self, name: str) -> list[tuple[str, str]]:
        """``(alias, mac)`` of each ``<interface>`` in the live domain XML (alias without the
        ``ua-`` prefix KubeVirt gives user-defined devices). Raises ``DomainNotFound``."""
        def blocking() -> list[tuple[str, str]]:
            root = ET.fromstring(self._lookup(name).XMLDesc(0))
            found = []
            for iface in root.findall("./devices/interface"):
                alias_node, mac_node = iface.find("alias"), iface.find("mac")
                alias = (alias_node.get("name") if alias_node is not None else "") or ""
                mac = mac_node.get("address") if mac_node is not None else ""
                found.append((alias.removeprefix("ua-"), mac or ""))
            return found
        return await self._call(blocking)

    async def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI power button where the driver supports choosing it).

        A domain that is not running is left alone. Raises ``DomainNotFound``.
        """
        def blocking() -> None:
            dom = self._lookup(name)
            if not dom.isActive():
                return
            try:
                dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                dom.shutdown()
        await self._call(blocking)

    async def destroy(self, name: str) -> None:
        """Stop the domain immediately (libvirt ``destroy``); a stopped domain is left alone.
        Raises ``DomainNotFound``."""
        def blocking() -> None:
            dom = self._lookup(name)
            if dom.isActive():
                with self._span("destroy"):
                    dom.destroy()
        await self._call(blocking)

    async def undefine(self, name: str) -> None:
        """Remove the domain's definition (with managed save, snapshot, checkpoint metadata and
        NVRAM); a running domain becomes transient and disappears when it stops. Missing -> no-op."""
        def blocking() -> None:
            try:
                dom = self._lookup(name)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                raise
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                     | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            for attempt in (flags, libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, 0):
                try:
                    dom.undefineFlags(attempt) if attempt else dom.undefine()
                    return
                except libvirt.libvirtError as err:
                    if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                        return
                    if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG or attempt == 0:
                        raise
        await self._call(blocking)

    async def pause(self, name: str) -> None:
        """Suspend the guest's vCPUs; already paused -> no-op. Raises ``DomainNotFound``,
        ``HypervisorError(OperationInvalid)`` when it is not running."""
        def blocking() -> None:
            dom = self._lookup(name)
            state, _ = dom.state()
            if state == libvirt.VIR_DOMAIN_PAUSED:
                return
            if state not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                raise HypervisorError("OperationInvalid", f"domain {name} is not running")
            dom.suspend()
        await self._call(blocking)

    async def resume(self, name: str) -> None:
        """Resume a paused guest; running -> no-op. Raises ``DomainNotFound``,
        ``HypervisorError(OperationInvalid)`` when it is not paused or running."""
        def blocking() -> None:
            dom = self._lookup(name)
            state, _ = dom.state()
            if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                return
            if state != libvirt.VIR_DOMAIN_PAUSED:
                raise HypervisorError("OperationInvalid", f"domain {name} is not paused")
            dom.resume()
        await self._call(blocking)

    async def reboot(self, name: str) -> None:
        """Soft reboot: ask the guest to reboot (guest agent or ACPI, libvirt's default choice).
        Raises ``DomainNotFound``, ``HypervisorError(OperationInvalid)`` when not running."""
        def blocking() -> None:
            dom = self._lookup(name)
            if dom.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                raise HypervisorError("OperationInvalid", f"domain {name} is not running")
            dom.reboot(0)
        await self._call(blocking)

    async def domain_stats(self) -> dict[str, dict[str, float]]:
        """Statistics of every running domain (libvirt ``getAllDomainStats``): domain name ->
        flat fields ``cpu.time``/``cpu.user``/``cpu.system``/``vcpu.time`` (ns), ``net.rx.bytes``,
        ``net.tx.bytes``, ``net.rx.pkts``, ``net.tx.pkts``, ``block.rd.bytes``, ``block.wr.bytes``,
        ``block.rd.reqs``, ``block.wr.reqs`` (summed over vCPUs, NICs, disks) and ``balloon.*``
        (KiB). Drivers without statistics give an empty dict."""
        def blocking() -> dict[str, dict[str, float]]:
            try:
                records = self._conn.getAllDomainStats(0, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
            except libvirt.libvirtError as err:
                if err.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    return {}
                raise
            return {dom.name(): compute_flat_stats(stats) for dom, stats in records}
        return await self._call(blocking)

    async def node_info(self) -> NodeInfo:
        """The host's CPUs, memory and CPU model/vendor/features (libvirt ``getInfo`` and capabilities)."""
        def blocking() -> NodeInfo:
            model_arch, memory_mib, cpus, mhz = self._conn.getInfo()[:4]
            model, vendor, features, arch = parse_host_cpu(self._conn.getCapabilities())
            return NodeInfo(cpus=int(cpus), memory_bytes=int(memory_mib) * 2**20, cpu_model=model or model_arch,
                            cpu_vendor=vendor, cpu_features=features, arch=arch or model_arch,
                            hostname=self._conn.getHostname(), mhz=int(mhz))
        return await self._call(blocking)
