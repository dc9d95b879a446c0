"""OS section: machine type, SMBIOS sysinfo, BIOS/EFI firmware and direct kernel boot.

Sources: KubeVirt converter OS rules (``../shared/docs/kubevirt-api.md`` §7 "OS"):
``<type arch machine>hvm``; ``<smbios mode='sysinfo'>`` with system uuid/serial and
manufacturer/product/family; ``bios.useSerial`` -> ``<bios useserial='yes'>``; EFI ->
pflash ``<loader readonly secure type='pflash'>`` OVMF code + ``<nvram template>`` (secure boot
files when ``secureBoot``, which defaults to true, and then ``<smm/>``); kernelBoot ->
``<kernel>``, ``<initrd>``, ``<cmdline>``; ``startStrategy: Paused`` -> ``<bootmenu>``.

kubevirt-py addition: a containerDisk image carrying kernel metadata (see ``shared.images``)
boots that kernel directly when the VMI has no kernelBoot and no EFI.
"""

from __future__ import annotations

from pathlib import Path

from shared.images import ImageNotFound

from .. import vmi_view
from ..context import ConversionContext
from ..errors import DomainConversionError
from ..schema import Bios, BootMenu, Domain, Loader, Nvram, OSType, Smbios, Sysinfo, SysinfoEntry, SysinfoSystem
from .identity import compute_domain_uuid

ARCH = {"amd64": "x86_64", "arm64": "aarch64", "s390x": "s390x"}
DEFAULT_MACHINE = {"amd64": "q35", "arm64": "virt", "s390x": "s390-ccw-virtio"}

# (code candidates, vars-template candidates) as Debian's ovmf package names them
OVMF_FILES = {
    False: (("OVMF_CODE.fd", "OVMF_CODE_4M.fd"), ("OVMF_VARS.fd", "OVMF_VARS_4M.fd")),
    True: (("OVMF_CODE.secboot.fd", "OVMF_CODE_4M.secboot.fd"),
           ("OVMF_VARS.secboot.fd", "OVMF_VARS_4M.ms.fd", "OVMF_VARS.ms.fd")),
}


def find_ovmf(dirs: tuple[Path, ...], secure: bool) -> tuple[Path, Path] | None:
    """``(code, vars template)`` for the wanted kind of OVMF, or None when not installed."""
    codes, templates = OVMF_FILES[secure]
    for d in dirs:
        code = next((d / c for c in codes if (d / c).is_file()), None)
        template = next((d / t for t in templates if (d / t).is_file()), None)
        if code and template:
            return code, template
    return None


def configure_sysinfo(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """``<sysinfo type='smbios'>`` system entries and ``<os><smbios mode='sysinfo'>``."""
    fw = vmi_view.domain_spec(vmi).get("firmware") or {}
    entries = [SysinfoEntry("manufacturer", ctx.smbios_manufacturer), SysinfoEntry("product", ctx.smbios_product),
               SysinfoEntry("family", ctx.smbios_family), SysinfoEntry("uuid", compute_domain_uuid(vmi))]
    if fw.get("serial"):
        entries.append(SysinfoEntry("serial", fw["serial"]))
    domain.sysinfo = Sysinfo(system=SysinfoSystem(entries=entries))
    domain.os.smbios = Smbios()


def configure_firmware(vmi: dict, ctx: ConversionContext, domain: Domain) -> None:
    """Machine type, firmware and boot source (see module doc).

    Raises DomainConversionError: ``FirmwareUnavailable`` (EFI without OVMF files),
    ``InvalidSpec`` (secure boot with SMM disabled), ``ErrImagePull`` (kernelBoot image missing
    or without the named kernel/initrd).
    """
    d = vmi_view.domain_spec(vmi)
    arch = vmi_view.spec(vmi).get("architecture") or "amd64"
    machine = (d.get("machine") or {}).get("type") or DEFAULT_MACHINE.get(arch, "q35")
    domain.os.type = OSType(arch=ARCH.get(arch, arch), machine=machine)
    fw = d.get("firmware") or {}
    bootloader = fw.get("bootloader") or {}
    efi = bootloader.get("efi")
    if efi is not None:
        _configure_efi(vmi, ctx, domain, efi)
    elif (bootloader.get("bios") or {}).get("useSerial"):
        domain.os.bios = Bios(useserial="yes")
    if vmi_view.spec(vmi).get("startStrategy") == "Paused":
        domain.os.bootmenu = BootMenu(enable="yes", timeout=10000)
    _configure_kernel_boot(vmi, ctx, domain, fw, efi is not None)


def _configure_efi(vmi: dict, ctx: ConversionContext, domain: Domain, efi: dict) -> None:
    secure = efi.get("secureBoot", True) is not False
    found = find_ovmf(ctx.ovmf_dirs, secure)
    if found is None:
        codes, templates = OVMF_FILES[secure]
        kind = "EFI secure boot" if secure else "EFI"
        raise DomainConversionError(
            "FirmwareUnavailable",
            f"spec.domain.firmware.bootloader.efi: {kind} needs {codes[0]} and {templates[0]} (Debian package "
            f"ovmf) in {', '.join(str(p) for p in ctx.ovmf_dirs)}, not installed on this node")
    code, template = found
    if secure:
        smm = (vmi_view.domain_spec(vmi).get("features") or {}).get("smm")
        if smm is not None and smm.get("enabled") is False:
            raise DomainConversionError("InvalidSpec",
                                        "spec.domain.features.smm: EFI secure boot needs SMM enabled")
        domain.features.smm = True
    domain.os.loader = Loader(path=str(code), readonly="yes", secure="yes" if secure else "no", type="pflash")
    domain.os.nvram = Nvram(path=str(ctx.vmi_dir / "nvram.fd"), template=str(template))


def _configure_kernel_boot(vmi: dict, ctx: ConversionContext, domain: Domain, fw: dict, is_efi: bool) -> None:
    kernel_boot = fw.get("kernelBoot") or {}
    container = kernel_boot.get("container")
    fp = "spec.domain.firmware.kernelBoot.container"
    if container:
        if ctx.images is None:
            raise DomainConversionError("ErrImagePull",
                                        f"{fp}.image: no image store to resolve {container.get('image')!r}")
        try:
            image = ctx.images.resolve(container.get("image", ""))
            kernel = image.path(container["kernelPath"]) if container.get("kernelPath") else image.kernel
            initrd = image.path(container["initrdPath"]) if container.get("initrdPath") else image.initrd
        except ImageNotFound as exc:
            raise DomainConversionError("ErrImagePull", f"{fp}: {exc.message}") from exc
        if kernel is None:
            raise DomainConversionError("ErrImagePull", f"{fp}.kernelPath: image {image.ref} has no kernel")
        domain.os.kernel = str(kernel)
        domain.os.initrd = str(initrd) if initrd else None
        domain.os.cmdline = kernel_boot.get("kernelArgs") or image.cmdline
        return
    if is_efi or ctx.images is None:
        return
    # kubevirt-py: containerDisk images built from a kernel + initramfs boot directly
    for disk in vmi_view.disk_specs(vmi):
        volume = vmi_view.volume_by_name(vmi).get(disk.name, (0, {}))[1]
        if "containerDisk" not in volume:
            continue
        try:
            image = ctx.images.resolve(volume["containerDisk"].get("image", ""))
        except ImageNotFound:
            continue  # reported by the disk configurator with the volume's field path
        if image.kernel is not None:
            domain.os.kernel = str(image.kernel)
            domain.os.initrd = str(image.initrd) if image.initrd else None
            domain.os.cmdline = kernel_boot.get("kernelArgs") or image.cmdline
        return
