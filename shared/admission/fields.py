"""Small helpers shared by the admission rules: building field paths the way KubeVirt writes
them and making causes."""

from __future__ import annotations

from shared.errors import StatusCause


def at(path: str, *parts: str | int) -> str:
    """``at("spec", "domain", "devices", "disks", 1, "name")`` ->
    ``spec.domain.devices.disks[1].name``."""
    out = path
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


def invalid_value(field: str, message: str) -> StatusCause:
    """A ``FieldValueInvalid`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueInvalid")


def required(field: str, message: str) -> StatusCause:
    """A ``FieldValueRequired`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueRequired")


def not_supported(field: str, message: str) -> StatusCause:
    """A ``FieldValueNotSupported`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueNotSupported")


def duplicate(field: str, message: str) -> StatusCause:
    """A ``FieldValueDuplicate`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueDuplicate")


def forbidden(field: str, message: str) -> StatusCause:
    """A ``FieldValueForbidden`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueForbidden")


def not_found(field: str, message: str) -> StatusCause:
    """A ``FieldValueNotFound`` cause."""
    return StatusCause(field=field, message=message, reason="FieldValueNotFound")
