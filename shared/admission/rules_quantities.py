"""Quantity syntax in a VMI spec (``resources``, ``memory``, disk capacities): a malformed
quantity is a 422 at its field, checked before defaulting and the other rules read numbers
(Kubernetes rejects these while decoding ``resource.Quantity``)."""

from __future__ import annotations

from typing import Any

from shared.admission.fields import at, invalid_value
from shared.api.quantity import is_quantity, parse_quantity
from shared.errors import StatusCause

MAX_QUANTITY = 2**63
"""Kubernetes quantities are int64-scaled; larger values are refused."""
QUANTITY_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def _quantity_fields(spec: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    domain = spec.get("domain") or {}
    found: list[tuple[str, Any]] = []
    resources = domain.get("resources") or {}
    for group in ("requests", "limits"):
        for name, value in (resources.get(group) or {}).items():
            found.append((at(path, "domain", "resources", group, name), value))
    memory = domain.get("memory") or {}
    for key in ("guest", "maxGuest"):
        if key in memory:
            found.append((at(path, "domain", "memory", key), memory[key]))
    if "pageSize" in (memory.get("hugepages") or {}):
        found.append((at(path, "domain", "memory", "hugepages", "pageSize"), memory["hugepages"]["pageSize"]))
    for i, volume in enumerate(spec.get("volumes") or []):
        for source in ("emptyDisk", "hostDisk"):
            if "capacity" in (volume.get(source) or {}):
                found.append((at(path, "volumes", i, source, "capacity"), volume[source]["capacity"]))
    return found


def check_quantities(spec: dict[str, Any], path: str) -> list[StatusCause]:
    """A cause for every malformed quantity in ``spec`` (paths under ``path``)."""
    causes: list[StatusCause] = []
    for field, value in _quantity_fields(spec, path):
        if not is_quantity(value):
            causes.append(invalid_value(field, f"Invalid value: {value!r}: {QUANTITY_MESSAGE}"))
        elif abs(parse_quantity(value)) >= MAX_QUANTITY:
            causes.append(invalid_value(field, f"Invalid value: {value!r}: quantity too large (at most 2^63-1)"))
    return causes
