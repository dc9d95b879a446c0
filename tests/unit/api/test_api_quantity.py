"""Kubernetes quantities parse to the values Kubernetes gives them."""

from decimal import Decimal

import pytest

from shared.api.quantity import (
    QuantityError,
    format_number,
    is_quantity,
    parse_quantity,
    to_bytes,
    to_cores,
    to_mebibytes,
    to_millicores,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("128Mi", 128 * 2**20, id="mebibytes"),
        pytest.param("1Gi", 2**30, id="gibibytes"),
        pytest.param("1Ki", 1024, id="kibibytes"),
        pytest.param("1G", 10**9, id="gigabytes"),
        pytest.param("1024M", 1024 * 10**6, id="megabytes"),
        pytest.param("1k", 1000, id="kilo-lowercase"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("1.5Gi", 3 * 2**29, id="fraction-binary"),
        pytest.param("123", 123, id="plain"),
        pytest.param(2, 2, id="json-int"),
    ],
)
def test_memory_quantities_convert_to_bytes(text, expected):
    assert to_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "millicores", "cores"),
    [
        pytest.param("500m", 500, 1, id="half-cpu-rounds-up"),
        pytest.param("2", 2000, 2, id="two"),
        pytest.param(0.25, 250, 1, id="json-float"),
        pytest.param("1500m", 1500, 2, id="one-and-a-half"),
    ],
)
def test_cpu_quantities_convert_to_millicores_and_cores(text, millicores, cores):
    assert to_millicores(text) == millicores
    assert to_cores(text) == cores


@pytest.mark.parametrize(
    ("text", "mebibytes"),
    [
        pytest.param("100M", 95, id="100M"),
        pytest.param("2G", 1907, id="2G"),
        pytest.param("2Gi", 2048, id="2Gi"),
    ],
)
def test_mebibytes_match_kubevirt_converter_table(text, mebibytes):
    assert to_mebibytes(text) == mebibytes


@pytest.mark.parametrize("text", ["", "Gi", "1Gb", "1.2.3", "ten", "1 Gi x"])
def test_malformed_quantities_are_rejected_with_bad_request(text):
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert info.value.code == 400
    assert not is_quantity(text)


def test_parse_keeps_exact_decimal_values():
    assert parse_quantity("500m") == Decimal("0.5")
    assert is_quantity("1Gi")


@pytest.mark.parametrize(
    ("number", "text"),
    [
        pytest.param(2, "2", id="int"),
        pytest.param(2.0, "2", id="integral-float"),
        pytest.param(0.5, "500m", id="half"),
        pytest.param(0.0001, "0.0001", id="tiny"),
    ],
)
def test_json_numbers_get_their_quantity_string(number, text):
    assert format_number(number) == text
