"""The single error type of the VMI -> domain conversion.

Owns: :class:`DomainConversionError` with a stable machine-readable ``reason`` the
handler copies into the VMI status (a condition reason / event reason), and the
list of reasons in :data:`REASONS`.
"""

from __future__ import annotations

REASONS = {
    "ErrImagePull": "a containerDisk or kernelBoot image is not in the local image store",
    "FailedPvcNotFound": "a persistentVolumeClaim has no disk.img under the PVC root (KubeVirt's reason)",
    "HostDiskNotFound": "a hostDisk of type Disk points at a missing file",
    "FirmwareUnavailable": "EFI (or secure boot) was asked for but the OVMF files are not installed",
    "UnsupportedVolume": "a volume source kubevirt-py cannot present here (secret, configMap, dataVolume, ...)",
    "UnsupportedNetwork": "a network or binding other than the pod network with masquerade/bridge",
    "CacheModeUnsupported": "cache 'none' asked on a filesystem without O_DIRECT",
    "InvalidSpec": "the VMI contradicts itself in a way admission should have caught",
    "DiskPreparationFailed": "qemu-img or ISO creation failed while preparing disks",
}


class DomainConversionError(Exception):
    """The VMI cannot become a domain on this node.

    ``reason`` is one of :data:`REASONS` (stable, CamelCase, safe to show as a
    condition reason); ``message`` is one readable sentence naming the field or
    file at fault.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown DomainConversionError reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
