"""Quantities and VMI requests as KubeVirt renders them on the launcher pod."""

import pytest

from services.scheduler_bridge.resource_requests import (
    Requests,
    compute_vcpus,
    compute_vmi_requests,
    format_bytes,
    format_millicores,
    parse_quantity,
    to_bytes,
    to_millicores,
)
from shared.errors import BadRequest


@pytest.mark.parametrize("text, expected_bytes", [
    pytest.param("1Gi", 2**30, id="binary-giga"),
    pytest.param("128M", 128_000_000, id="decimal-mega"),
    pytest.param("1.5Gi", 3 * 2**29, id="fractional-binary"),
    pytest.param("1e3", 1000, id="exponent"),
    pytest.param(2048, 2048, id="plain-int"),
    pytest.param("3145728Ki", 3 * 2**30, id="kubelet-style"),
])
def test_memory_quantities_parse_to_bytes(text, expected_bytes):
    assert to_bytes(text) == expected_bytes


@pytest.mark.parametrize("text, expected", [
    pytest.param("1", 1000, id="one-cpu"),
    pytest.param("500m", 500, id="millicores"),
    pytest.param("0.1", 100, id="decimal"),
    pytest.param("1.0001", 1001, id="rounded-up"),
])
def test_cpu_quantities_parse_to_millicores(text, expected):
    assert to_millicores(text) == expected


@pytest.mark.parametrize("bad", ["", "1GB", "abc", "1..2", True])
def test_bad_quantities_are_rejected_with_a_readable_error(bad):
    with pytest.raises(BadRequest, match="quantit"):
        parse_quantity(bad)


@pytest.mark.parametrize("value, expected", [(2000, "2"), (1500, "1500m")])
def test_format_millicores(value, expected):
    assert format_millicores(value) == expected


@pytest.mark.parametrize("value, expected", [(2**30, "1Gi"), (3 * 2**20, "3Mi"), (5 * 2**10, "5Ki"), (1000, "1000")])
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected
    assert to_bytes(expected) == value


def vmi_with(domain):
    return {"spec": {"domain": domain}}


@pytest.mark.parametrize("domain, expected", [
    pytest.param({"resources": {"requests": {"memory": "64Mi"}}}, Requests(100, 64 * 2**20), id="defaults"),
    pytest.param({"cpu": {"sockets": 2, "cores": 2, "threads": 2}, "memory": {"guest": "1Gi"}},
                 Requests(800, 2**30), id="topology-and-guest-memory"),
    pytest.param({"cpu": {"cores": 2, "dedicatedCpuPlacement": True}, "resources": {"limits": {"memory": "2Gi"}}},
                 Requests(2000, 2 * 2**30), id="dedicated-cpus-and-limits-memory"),
    pytest.param({"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
                 Requests(250, 2**30), id="explicit-requests-win"),
    pytest.param({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}, Requests(2000, 2**30),
                 id="limits-only-act-as-requests"),
])
def test_vmi_requests_follow_kubevirt_rendering(domain, expected):
    assert compute_vmi_requests(vmi_with(domain)) == expected


def test_vcpus_from_cpu_limit_without_topology():
    assert compute_vcpus(vmi_with({"resources": {"limits": {"cpu": "2500m"}}})) == 3
