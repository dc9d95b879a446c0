"""VMI firmware rules: one bootloader, secure boot needs SMM, ACPI tables name usable volumes
(kubevirt-api.md §6.3 rules 38-40; KubeVirt vmi-create-admitter.go)."""

from __future__ import annotations

from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, invalid_value, not_found
from shared.errors import StatusCause

ACPI_TABLE_SOURCES = ("secret",)


def check_bootloader(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``bios`` and ``efi`` are exclusive; EFI with secure boot (the default) needs the SMM
    feature enabled (rules 38, 39). The secure-boot cause is reported at ``domain`` like KubeVirt."""
    domain = spec.get("domain") or {}
    bootloader = (domain.get("firmware") or {}).get("bootloader") or {}
    field = at(path, "domain", "firmware", "bootloader")
    if "bios" in bootloader and "efi" in bootloader:
        return [invalid_value(field, f"{field} has both EFI and BIOS configured, but they are mutually exclusive.")]
    efi = bootloader.get("efi")
    if efi is not None and efi.get("secureBoot", True):
        smm = (domain.get("features") or {}).get("smm")
        if smm is None or smm.get("enabled") is False:
            domain_field = at(path, "domain")
            return [invalid_value(
                domain_field,
                f"{field} has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled. "
                f"Add {at(path, 'domain', 'features', 'smm')}: {{}} or set {at(field, 'efi', 'secureBoot')}: false.",
            )]
    return []


def check_acpi_tables(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """``firmware.acpi`` names at least one table, each a Secret volume of the VMI (rule 40)."""
    acpi = ((spec.get("domain") or {}).get("firmware") or {}).get("acpi")
    if acpi is None:
        return []
    field = at(path, "domain", "firmware", "acpi")
    refs = {k: acpi.get(k) for k in ("slicNameRef", "msdmNameRef") if acpi.get(k)}
    if not refs:
        return [invalid_value(field, f"{field} must have slicNameRef or msdmNameRef set")]
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    causes: list[StatusCause] = []
    for key, name in refs.items():
        volume = volumes.get(name)
        if volume is None:
            causes.append(not_found(at(field, key), f"{at(field, key)} '{name}' not found."))
        elif not any(s in volume for s in ACPI_TABLE_SOURCES):
            causes.append(invalid_value(at(field, key), f"{at(field, key)} '{name}' must be a volume of type secret"))
    return causes


FIRMWARE_RULES = (check_bootloader, check_acpi_tables)
