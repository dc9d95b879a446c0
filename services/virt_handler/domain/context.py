"""What the converter needs to know about the node, beyond the VMI itself.

Owns: :class:`ConversionContext` (passed unchanged to every configurator),
:class:`PortForward`, the :class:`ImageResolver` protocol and the OVMF search
paths. Values are decided by the handler (acceleration probe, directories,
host ports); the converter never probes the machine on its own except for
read-only lookups (image store index, PVC and OVMF file existence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.images import ResolvedImage

DEFAULT_OVMF_DIRS: tuple[Path, ...] = (Path("/usr/share/OVMF"), Path("/usr/share/ovmf"))
DEFAULT_PVC_ROOT = Path("/var/lib/kubevirt-py/pvcs")


class ImageResolver(Protocol):
    """Anything with ``resolve(ref) -> ResolvedImage`` raising ``shared.images.ImageNotFound``
    (``shared.images.ImageStore`` is the real one)."""

    def resolve(self, ref: str) -> ResolvedImage: ...


@dataclass(frozen=True)
class PortForward:
    """One host port forwarded into the guest (stands in for KubeVirt's masquerade ``ports``).

    ``protocol`` "TCP" | "UDP"; ``guest_port`` the port in the guest; ``host_port`` the port
    the handler reserved on ``host_address``.
    """

    protocol: str
    guest_port: int
    host_port: int
    host_address: str = "127.0.0.1"


@dataclass(frozen=True)
class ConversionContext:
    """Node facts for one conversion.

    - ``domain_type``: ``"kvm"``, ``"qemu"`` (TCG, see ``services.virt_handler.kvm_probe``) or
      ``"test"`` (libvirt's ``test:///default`` driver: same XML, no host files needed).
    - ``vmi_dir``: per-VMI directory for overlays, ISOs, NVRAM and the console log
      (created by the caller; must be traversable by the QEMU user).
    - ``images``: resolves containerDisk / kernelBoot references (None: any image use fails
      with ``ErrImagePull``).
    - ``pvc_root``: where a PVC ``<ns>/<claimName>/disk.img`` lives on the embedded installation.
    - ``port_forwards``: host ports forwarded into the guest's pod NIC.
    - ``ovmf_dirs``: directories searched for OVMF firmware files.
    - ``direct_io``: whether ``vmi_dir`` supports O_DIRECT (decides the default cache mode,
      as KubeVirt does; probe with ``services.virt_handler.domain.is_direct_io_supported``).
    - ``emulator``: explicit ``<emulator>`` path (None: libvirt's default for the arch).
    - ``mem_balloon_stats_period``: seconds, KubeVirt's ``memBalloonStatsPeriod`` (default 10).
    """

    domain_type: str
    vmi_dir: Path
    images: ImageResolver | None = None
    pvc_root: Path = DEFAULT_PVC_ROOT
    port_forwards: tuple[PortForward, ...] = ()
    ovmf_dirs: tuple[Path, ...] = DEFAULT_OVMF_DIRS
    direct_io: bool = False
    emulator: str | None = None
    mem_balloon_stats_period: int = 10
    smbios_manufacturer: str = "KubeVirt"
    smbios_product: str = "None"
    smbios_family: str = "KubeVirt"

    def __post_init__(self) -> None:
        if self.domain_type not in ("kvm", "qemu", "test"):
            raise ValueError(f"domain_type must be kvm, qemu or test, not {self.domain_type!r}")

    @property
    def is_kvm(self) -> bool:
        """True when guests run with hardware acceleration (host CPU models are usable)."""
        return self.domain_type == "kvm"
