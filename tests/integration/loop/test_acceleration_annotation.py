"""The VMI says how its guest is accelerated: virt-handler annotates it with the domain type it used."""

from __future__ import annotations

import pytest

from loop_helpers import VMIS, get_or_none, make_vm, wait_until
from services.virt_handler.acceleration import ANNOTATION, compute_acceleration
from services.virt_handler.domain import domain_name

pytestmark = pytest.mark.timeout(60)
VMS = "virtualmachines"


@pytest.mark.parametrize(("domain_type", "value"), [
    pytest.param("kvm", "kvm", id="kvm"),
    pytest.param("qemu", "tcg", id="qemu-is-tcg"),
    pytest.param("test", "test", id="test-driver"),
])
def test_compute_acceleration(domain_type: str, value: str) -> None:
    assert compute_acceleration(domain_type) == value


def test_compute_acceleration_rejects_unknown_types() -> None:
    with pytest.raises(ValueError, match="unknown libvirt domain type 'xen'"):
        compute_acceleration("xen")


async def test_started_vmi_carries_the_domain_type_it_runs_with(object_store, controller, bridge, node):
    await object_store.create(VMS, make_vm("accel"))
    vmi = await wait_until(lambda: _annotated(object_store, "accel"))
    domain = await node.hypervisor.get_domain(domain_name("default", "accel"))
    used = node.agent.config.domain_type
    assert vmi["metadata"]["annotations"][ANNOTATION] == compute_acceleration(used) == "test"
    assert vmi["status"]["phase"] == "Running"
    assert domain.uid == vmi["metadata"]["uid"]
    # a later status write (the guest pauses) keeps it
    await node.hypervisor.pause(domain.name)
    paused = await wait_until(lambda: _phase_condition(object_store, "accel", "Paused"))
    assert paused["metadata"]["annotations"][ANNOTATION] == "test"


async def _annotated(store, name):
    vmi = await get_or_none(store, VMIS, name)
    if vmi and ANNOTATION in ((vmi.get("metadata") or {}).get("annotations") or {}) \
            and (vmi.get("status") or {}).get("phase") == "Running":
        return vmi
    return None


async def _phase_condition(store, name, ctype):
    vmi = await get_or_none(store, VMIS, name)
    conditions = ((vmi or {}).get("status") or {}).get("conditions") or []
    return vmi if any(c.get("type") == ctype and c.get("status") == "True" for c in conditions) else None
