"""Time for controllers: the Clock protocol (virt-controller, virt-migration, leader election).

Controllers take a Clock so that backoff and heartbeat timeouts can be tested on a fake clock
with exact seconds. Formatting and parsing RFC 3339 timestamps is
:mod:`shared.api.vocabulary` (``format_time``, ``format_micro_time``, ``parse_time``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared.api.vocabulary import utc_now


class Clock(Protocol):
    """Source of the current time (timezone-aware UTC datetimes)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The current time (UTC)."""
        return utc_now()
