"""Go duration strings (``5m``, ``1h30m``, ``300s``, ``1.5h``, ``0``) as Kubernetes'
``metav1.Duration`` reads them (Go ``time.ParseDuration``), with Go's error texts.

Used for ``VirtualMachineSnapshot.spec.failureDeadline`` and the ``unfreezeTimeout`` of the
VMI ``freeze`` subresource.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS: dict[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # U+00B5 micro sign
    "μs": Decimal("1e-6"),  # U+03BC Greek mu
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
MAX_SECONDS = Decimal(2**63 - 1) / Decimal(10**9)
"""Go durations are int64 nanoseconds (about 292 years)."""


class DurationError(ValueError):
    """A string Go's ``time.ParseDuration`` refuses; ``str(err)`` is Go's message
    (``time: invalid duration "abc"``)."""


def parse_go_duration(text: str) -> Decimal:
    """Seconds (exact) of a Go duration string; negative for a leading ``-``.

    Raises :class:`DurationError` with Go's messages: ``time: invalid duration "<s>"``,
    ``time: missing unit in duration "<s>"``, ``time: unknown unit "<u>" in duration "<s>"``."""
    quoted = '"' + text + '"'
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return Decimal(0)
    if not rest:
        raise DurationError(f"time: invalid duration {quoted}")
    total = Decimal(0)
    while rest:
        match = _PART.match(rest)
        number, unit = (match.group(1), match.group(2)) if match else ("", "")
        if number in ("", "."):
            raise DurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {quoted}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        try:
            total += Decimal(number) * scale
        except InvalidOperation:
            raise DurationError(f"time: invalid duration {quoted}") from None
        rest = rest[len(number) + len(unit):]
    if total > MAX_SECONDS:
        raise DurationError(f"time: invalid duration {quoted}")
    return -total if negative else total


def format_go_duration(seconds: int) -> str:
    """Go's ``Duration.String()`` of a whole number of seconds: ``300`` -> ``5m0s``,
    ``3661`` -> ``1h1m1s``, ``0`` -> ``0s``."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"
