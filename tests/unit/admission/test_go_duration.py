"""Go duration strings as ``time.ParseDuration`` reads them, with Go's error texts."""

from decimal import Decimal

import pytest

from shared.admission.go_duration import DurationError, format_go_duration, parse_go_duration


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("0s", 0), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("300s", 300), ("500ms", Decimal("0.5")),
    ("-2m", -120), ("+1s", 1), ("1h1m1s", 3661), (".5s", Decimal("0.5")), ("2us", Decimal("0.000002")),
    ("3µs", Decimal("0.000003")),
])
def test_parse(text, seconds):
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("", 'time: invalid duration ""'),
    ("abc", 'time: invalid duration "abc"'),
    ("5", 'time: missing unit in duration "5"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("1m5", 'time: missing unit in duration "1m5"'),
    (".s", 'time: invalid duration ".s"'),
    ("-", 'time: invalid duration "-"'),
    ("9999999999h", 'time: invalid duration "9999999999h"'),
])
def test_refusals_carry_gos_message(text, message):
    with pytest.raises(DurationError) as err:
        parse_go_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (300, "5m0s"), (3661, "1h1m1s"), (-90, "-1m30s")])
def test_format_as_go_prints_it(seconds, text):
    assert format_go_duration(seconds) == text
