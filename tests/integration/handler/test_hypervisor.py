"""Hypervisor gateway against libvirt's real test driver (private host per test)."""

import asyncio
import threading

import pytest

from services.virt_handler.hypervisor import DomainNotFound, Hypervisor, HypervisorError, HypervisorTimeout
from services.virt_handler.simulated_node import apply_test_node_file

GI = 2**30


def domain_xml(name="default_vm1", uid="uid-1", memory_kib=65536):
    return f"""<domain type='test'>
  <name>{name}</name>
  <metadata><kubevirt xmlns="http://kubevirt.io"><uid>{uid}</uid></kubevirt></metadata>
  <memory unit='KiB'>{memory_kib}</memory><vcpu>1</vcpu><os><type>hvm</type></os>
</domain>"""


@pytest.fixture
async def hypervisor(tmp_path):
    hv = Hypervisor(apply_test_node_file(tmp_path / "node.xml", cpus=6, memory_bytes=12 * GI))
    await hv.open()
    yield hv
    await hv.close()


async def next_event(events, *, kind, name="default_vm1", timeout=5.0):
    async def wait():
        async for event in events:
            if event.event == kind and event.name == name:
                return event
    return await asyncio.wait_for(wait(), timeout)


async def test_node_info_reads_the_host_size(hypervisor):
    info = await hypervisor.node_info()
    assert (info.cpus, info.memory_bytes, info.cpu_model) == (6, 12 * GI, "x86_64")
    assert info.hostname


async def test_define_and_start_reports_a_running_domain_with_its_vmi_uid(hypervisor):
    info = await hypervisor.define_and_start(domain_xml())
    assert (info.name, info.state, info.reason, info.uid) == ("default_vm1", "Running", "Booted", "uid-1")
    assert info.is_active and info.domain_id > 0
    assert [d.name for d in await hypervisor.list_domains()] == ["default_vm1"]
    assert "<name>default_vm1</name>" in await hypervisor.get_domain_xml("default_vm1")


async def test_start_paused_leaves_the_domain_paused(hypervisor):
    info = await hypervisor.define_and_start(domain_xml(), paused=True)
    assert info.state == "Paused"


@pytest.mark.parametrize("stop, expected_reason", [
    pytest.param("shutdown", "Shutdown", id="guest-shutdown"),
    pytest.param("destroy", "Destroyed", id="forced-destroy"),
])
async def test_stopping_keeps_the_definition_with_the_libvirt_reason(hypervisor, stop, expected_reason):
    events = hypervisor.events()
    await hypervisor.define_and_start(domain_xml())
    await getattr(hypervisor, stop)("default_vm1")
    event = await next_event(events, kind="Stopped")
    assert event.detail == expected_reason
    info = await hypervisor.get_domain("default_vm1")
    assert (info.state, info.reason, info.domain_id) == ("Shutoff", expected_reason, -1)
    await hypervisor.destroy("default_vm1")  # already stopped: no-op
    await hypervisor.shutdown("default_vm1")
    await events.aclose()


async def test_pause_resume_and_reboot(hypervisor):
    events = hypervisor.events()
    await hypervisor.define_and_start(domain_xml())
    await hypervisor.pause("default_vm1")
    await next_event(events, kind="Suspended")
    paused = await hypervisor.get_domain("default_vm1")
    assert (paused.state, paused.reason) == ("Paused", "User")
    await hypervisor.pause("default_vm1")  # idempotent
    await hypervisor.resume("default_vm1")
    await next_event(events, kind="Resumed")
    await hypervisor.resume("default_vm1")
    await hypervisor.reboot("default_vm1")
    assert (await hypervisor.get_domain("default_vm1")).state == "Running"
    await events.aclose()


async def test_undefine_removes_the_domain_and_is_idempotent(hypervisor):
    await hypervisor.define_and_start(domain_xml())
    await hypervisor.destroy("default_vm1")
    await hypervisor.undefine("default_vm1")
    await hypervisor.undefine("default_vm1")
    assert await hypervisor.get_domain("default_vm1") is None
    assert await hypervisor.list_domains() == []


async def test_libvirt_errors_become_hypervisor_errors(hypervisor):
    with pytest.raises(DomainNotFound):
        await hypervisor.pause("default_missing")
    with pytest.raises(HypervisorError) as invalid:
        await hypervisor.define_and_start("<domain type='test'><name>broken</name>")
    assert invalid.value.reason == "InvalidDomain"
    await hypervisor.define_and_start(domain_xml())
    await hypervisor.destroy("default_vm1")
    with pytest.raises(HypervisorError) as not_running:
        await hypervisor.pause("default_vm1")
    assert not_running.value.reason == "OperationInvalid"


async def test_a_hung_call_times_out_without_blocking_the_loop(tmp_path):
    hv = Hypervisor(apply_test_node_file(tmp_path / "node.xml", cpus=2, memory_bytes=GI),
                    max_workers=1, call_timeout=0.2)
    await hv.open()
    release = threading.Event()
    hv._pool.submit(release.wait)  # occupy the only worker, as a hung libvirt call would
    try:
        with pytest.raises(HypervisorTimeout) as timed_out:
            await hv.list_domains()
        assert timed_out.value.retryable
    finally:
        release.set()
        await hv.close()


async def test_foreign_domains_have_no_uid(tmp_path):
    hv = Hypervisor(apply_test_node_file(tmp_path / "node.xml", cpus=2, memory_bytes=GI))
    await hv.open()
    try:
        info = await hv.define_and_start(
            "<domain type='test'><name>other</name><memory>1024</memory><os><type>hvm</type></os></domain>")
        assert info.uid is None
    finally:
        await hv.close()
