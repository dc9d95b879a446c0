"""Ages as kubectl prints them (the AGE and LAST SEEN columns).

Kubernetes' ``HumanDuration`` (k8s.io/apimachinery/pkg/util/duration): seconds below two
minutes, minutes (with seconds below ten minutes) below three hours, hours (with minutes below
eight hours) below two days, days (with hours below eight days) below two years, then years
(with days below eight years).
"""

from __future__ import annotations

from datetime import datetime

from shared.api.vocabulary import parse_time


def format_age(seconds: float) -> str:
    """``seconds`` as Kubernetes' HumanDuration: ``59s``, ``2m``, ``5m30s``, ``3h``, ``2d4h``,
    ``1y20d``; ``<invalid>`` below -1 s, ``0s`` for -1 s (clock skew)."""
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def format_age_since(timestamp: object, now: datetime) -> str:
    """The age of an RFC 3339 ``timestamp`` at ``now`` (aware datetime), as :func:`format_age`;
    ``<unknown>`` when the timestamp is missing or not RFC 3339."""
    try:
        moment = parse_time(timestamp) if isinstance(timestamp, str) else None
    except ValueError:
        moment = None
    if moment is None:
        return "<unknown>"
    return format_age((now - moment).total_seconds())
