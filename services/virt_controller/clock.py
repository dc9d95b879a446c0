"""Time for controllers: a Clock protocol and RFC 3339 formatting.

Controllers take a Clock so that backoff and heartbeat timeouts can be tested on a fake clock
with exact seconds. Timestamps in objects are RFC 3339 UTC with second precision, as
Kubernetes' ``metav1.Time`` serializes them (``2026-01-02T03:04:05Z``); leases use
``metav1.MicroTime`` (microseconds).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    """Source of the current time (timezone-aware UTC datetimes)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with seconds, Kubernetes ``metav1.Time`` form: ``2026-01-02T03:04:05Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, Kubernetes ``metav1.MicroTime`` form."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp (``Z`` or offset, optional fraction); None/empty -> None.

    Raises ValueError for text that is not RFC 3339.
    """
    if not text:
        return None
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
