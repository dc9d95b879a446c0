"""shared.logging_setup: JSON lines, with trace_id/span_id only inside a recording span."""

from __future__ import annotations

import io
import json
import logging

import pytest

from opentelemetry.sdk.trace import TracerProvider

from shared.logging_setup import JsonFormatter


def _line(formatter, message, **extra):
    record = logging.LogRecord("kubevirt.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(formatter.format(record))


def test_a_line_outside_a_span_has_no_trace_fields():
    line = _line(JsonFormatter("virt-api"), "hello", vmi="default/v1")
    assert (line["level"], line["logger"], line["msg"], line["service"], line["vmi"]) == \
        ("warning", "kubevirt.test", "hello", "virt-api", "default/v1")
    assert "trace_id" not in line and line["ts"].endswith("Z")


def test_a_line_inside_a_recording_span_carries_its_ids():
    tracer = TracerProvider().get_tracer("test")  # a private provider: the global one is shared.tracing's
    with tracer.start_as_current_span("op") as span:
        line = _line(JsonFormatter(), "inside")
        ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert "service" not in line


def test_exceptions_are_one_json_field():
    formatter = JsonFormatter("x")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("l", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(formatter.format(record))
    assert "ValueError: boom" in line["exc"]
    assert io.StringIO(formatter.format(record)).read().count("\n") == 0


def test_service_logging_is_json_when_asked(monkeypatch):
    from shared.logging_setup import LOG_FORMAT_ENV, apply_service_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    monkeypatch.setenv(LOG_FORMAT_ENV, "json")
    try:
        apply_service_logging("virt-controller", "INFO")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter) and handler.formatter.service == "virt-controller"
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


@pytest.mark.parametrize("env_value, expect_json", [
    pytest.param(None, True, id="json-by-default"),
    pytest.param("text", False, id="text-when-asked"),
])
def test_service_logging_defaults_to_json_lines(monkeypatch, env_value, expect_json):
    from shared.logging_setup import LOG_FORMAT_ENV, apply_service_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    for h in list(root.handlers):
        root.removeHandler(h)
    if env_value is None:
        monkeypatch.delenv(LOG_FORMAT_ENV, raising=False)
    else:
        monkeypatch.setenv(LOG_FORMAT_ENV, env_value)
    try:
        apply_service_logging("virt-handler", "INFO")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter) is expect_json
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
