"""Serial console and the guest-agent channel.

Source: KubeVirt console/channel rules (``../shared/docs/kubevirt-api.md`` §7): a serial
port 0 plus ``<console type='pty'><target type='serial' port='0'>`` unless
``autoattachSerialConsole: false``, logged to a file; always a virtio channel named
``org.qemu.guest_agent.0`` (libvirt picks the socket path and adds the virtio-serial controller).

kubevirt-py: the serial port is a ``pty`` (``virDomainOpenConsole`` streams it) and is
logged by virtlogd to ``<vmi_dir>/console.log``.
"""

from __future__ import annotations

from .. import vmi_view
from ..context import ConversionContext
from ..schema import Channel, ChannelSource, ChannelTarget, Console, Domain, Log, Serial

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
CONSOLE_LOG = "console.log"


def configure_serial_console(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """pty serial port 0 logged to ``<vmi_dir>/console.log`` + its ``<console>``."""
    if not vmi_view.is_enabled(vmi_view.devices(vmi).get("autoattachSerialConsole"), True):
        return
    domain.devices.serials.append(Serial(type="pty", log=Log(file=str(ctx.vmi_dir / CONSOLE_LOG), append="on")))
    domain.devices.consoles.append(Console(type="pty"))


def configure_guest_agent_channel(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """The ``org.qemu.guest_agent.0`` virtio channel (unix socket bound by QEMU)."""
    domain.devices.channels.append(Channel(type="unix", source=ChannelSource(mode="bind"),
                                           target=ChannelTarget(type="virtio", name=GUEST_AGENT_CHANNEL)))
