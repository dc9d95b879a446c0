"""Kubernetes resource quantities ("128Mi", "1G", "2", "500m") as numbers.

Owns: :func:`parse_quantity` for the memory and capacity fields the converter reads.
Source: k8s.io/apimachinery ``pkg/api/resource`` suffixes (binary Ki..Ei, decimal k..E, m).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
import math

from .errors import DomainConversionError

_SUFFIX: dict[str, int | Decimal] = {
    "": 1, "m": Decimal("0.001"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_PATTERN = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def parse_quantity(value: str | int | float, field_path: str) -> int:
    """Bytes (or units) of a quantity, rounded up to an integer.

    ``"128Mi"`` -> 134217728, ``"1024M"`` -> 1024000000, ``1024`` -> 1024.
    Raises DomainConversionError(InvalidSpec) naming ``field_path`` for malformed input.
    """
    if isinstance(value, (int, float)):
        return math.ceil(value)
    match = _PATTERN.match(str(value).strip())
    if not match:
        raise DomainConversionError("InvalidSpec", f"{field_path}: {value!r} is not a quantity")
    try:
        number = Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation as exc:
        raise DomainConversionError("InvalidSpec", f"{field_path}: {value!r} is not a quantity") from exc
    return math.ceil(number)
