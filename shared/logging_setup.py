"""Structured JSON log lines for every service, carrying the current trace context.

Owns: :class:`JsonFormatter` (one JSON object per line: ``ts`` RFC 3339 UTC with microseconds,
``level``, ``logger``, ``msg``, ``service``, plus ``trace_id`` / ``span_id`` (W3C hex) when the
line is written inside a recording OpenTelemetry span, ``exc`` with the traceback when there is
one, and any ``extra=`` fields) and :func:`apply_json_logging`, which installs it on the root
logger. It only reads the current span (``opentelemetry.trace.get_current_span``); setting up
the SDK and exporters is :mod:`shared.tracing`'s job.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from opentelemetry import trace

#: LogRecord attributes that are not user ``extra=`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


def compute_trace_fields() -> dict[str, str]:
    """``{"trace_id": 32 hex, "span_id": 16 hex}`` of the current recording span, else ``{}``."""
    span = trace.get_current_span()
    if not span.is_recording():
        return {}
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


class JsonFormatter(logging.Formatter):
    """Formats a LogRecord as one JSON line (see the module docstring for the fields)."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.service:
            line["service"] = self.service
        line.update(compute_trace_fields())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def apply_json_logging(service: str, level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one JSON-lines handler on ``stream`` (stderr by
    default) at ``level``; returns the handler. Idempotent per process: calling again replaces it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


#: Environment variable choosing the log format of every service: ``json`` or ``text`` (default).
LOG_FORMAT_ENV = "KUBEVIRT_PY_LOG_FORMAT"


def apply_service_logging(service: str, level: str = "INFO", fmt: str | None = None) -> None:
    """A service's logging: JSON lines (:func:`apply_json_logging`, with ``trace_id``/``span_id``
    inside a span) by default; ``fmt="text"`` (default: ``$KUBEVIRT_PY_LOG_FORMAT``) gives the
    classic text lines (``time LEVEL logger: message``) for reading by eye."""
    import os

    if fmt is None:
        fmt = os.environ.get(LOG_FORMAT_ENV, "json")
    if fmt.strip().lower() != "text":
        apply_json_logging(service, level)
    else:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
