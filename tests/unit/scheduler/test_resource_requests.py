"""Quantities and VMI requests as KubeVirt renders them on the launcher pod."""

import msgspec
import pytest

from services.scheduler_bridge.resource_requests import (
    Requests,
    compute_vcpus,
    compute_vmi_requests,
    format_bytes,
    format_millicores,
)
from shared.api.quantity import to_bytes
from shared.api.vmi import VirtualMachineInstance


@pytest.mark.parametrize("value, expected", [(2000, "2"), (1500, "1500m")])
def test_format_millicores(value, expected):
    assert format_millicores(value) == expected


@pytest.mark.parametrize("value, expected", [(2**30, "1Gi"), (3 * 2**20, "3Mi"), (5 * 2**10, "5Ki"), (1000, "1000")])
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected
    assert to_bytes(expected) == value


def vmi_with(domain):
    return msgspec.convert({"spec": {"domain": domain}}, VirtualMachineInstance)


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
