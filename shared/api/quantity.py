"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500m``, ``2``, ``1e3``): parsing into
exact numbers, bytes and millicores (source: k8s.io/apimachinery pkg/api/resource).

Quantities stay strings in the API objects; this module is for code that must compare or
compute with them (admission rules, the domain converter, the scheduler).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from shared.errors import BadRequest

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
MAX_EXPONENT = 1000
"""Exponents beyond this are refused (Kubernetes caps quantities far below)."""
_PATTERN = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


class QuantityError(BadRequest):
    """A string that is not a Kubernetes quantity (``quantities must match the regular
    expression ...``)."""

    def __init__(self, text: str) -> None:
        super().__init__(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity: ``parse_quantity("1Ki") == 1024``,
    ``parse_quantity("500m") == Decimal("0.5")``. Raises :class:`QuantityError`."""
    if isinstance(value, bool):
        raise QuantityError(str(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    match = _PATTERN.match(value.strip())
    if not match:
        raise QuantityError(value)
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["number"])
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix in _DECIMAL:
            return number * _DECIMAL[suffix]
        exponent = int(suffix[1:])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(value)
        return number * (Decimal(10) ** exponent)
    except ArithmeticError:  # overflow of an absurd exponent or digit count
        raise QuantityError(value) from None


def is_quantity(value: object) -> bool:
    """Whether ``value`` parses as a quantity."""
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except (QuantityError, TypeError, AttributeError, ArithmeticError):
        return False
    return True


def to_bytes(value: str | int | float) -> int:
    """A memory quantity in bytes, rounded up (Kubernetes ``Quantity.Value()``):
    ``to_bytes("128Mi") == 134217728``, ``to_bytes("1G") == 10**9``."""
    return math.ceil(parse_quantity(value))


def to_millicores(value: str | int | float) -> int:
    """A CPU quantity in millicores, rounded up (``Quantity.MilliValue()``):
    ``to_millicores("500m") == 500``, ``to_millicores(2) == 2000``."""
    return math.ceil(parse_quantity(value) * 1000)


def to_cores(value: str | int | float) -> int:
    """Whole CPUs, rounded up (``Quantity.Value()``): ``to_cores("500m") == 1``."""
    return math.ceil(parse_quantity(value))


def to_mebibytes(value: str | int | float) -> int:
    """Bytes / 2**20 rounded down, as KubeVirt's converter does for ``<memory unit='MiB'>``:
    ``to_mebibytes("100M") == 95``, ``to_mebibytes("2Gi") == 2048``."""
    return to_bytes(value) // 2**20


def format_number(value: int | float) -> str:
    """The string form of a quantity given as a JSON number (``2`` -> "2", ``0.5`` -> "500m")."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return str(value)  # "inf"/"nan": not a quantity, refused by validation
    if number == number.to_integral_value():
        return str(int(number))
    millis = number * 1000
    if millis == millis.to_integral_value():
        return f"{int(millis)}m"
    return format(number.normalize(), "f")


def format_bytes(value: int) -> str:
    """A byte count in the largest exact binary unit: ``format_bytes(4 * 2**30) == "4Gi"``,
    ``format_bytes(1500) == "1500"``."""
    for suffix, size in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value and value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)
