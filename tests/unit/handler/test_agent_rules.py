"""Small rules of the handler's sync loop: keys, grace period, backoff, work queue, stats, domain type."""

import asyncio

import msgspec
import pytest

from services.virt_handler.agent import (
    compute_domain_type,
    compute_grace_seconds,
    compute_item_delay,
    compute_key_of_domain,
)
from services.virt_handler.domain_events import DomainEventRelay
from services.virt_handler.hypervisor import LifecycleEvent, compute_flat_stats
from services.virt_handler.sync_executor import SyncState
from services.virt_handler.main import HandlerSettings, decide_domain_type
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import utc_now
from shared.workqueue import WorkQueue


@pytest.mark.parametrize("name, expected", [
    pytest.param("default_vm1", "default/vm1", id="plain"),
    pytest.param("ns-a_vm.with.dots", "ns-a/vm.with.dots", id="dotted-name"),
    pytest.param("test", None, id="foreign-domain"),
    pytest.param("_x", None, id="no-namespace"),
])
def test_domain_names_map_back_to_vmi_keys(name, expected):
    assert compute_key_of_domain(name) == expected


@pytest.mark.parametrize("spec, expected", [
    pytest.param({}, 180, id="kubevirt-default"),
    pytest.param({"terminationGracePeriodSeconds": 0}, 0, id="zero"),
    pytest.param({"terminationGracePeriodSeconds": 30}, 30, id="explicit"),
])
def test_grace_period(spec, expected):
    vmi = msgspec.convert({"spec": {"domain": {}, **spec}}, VirtualMachineInstance)
    assert compute_grace_seconds(vmi) == expected


@pytest.mark.parametrize("failures, expected", [(1, 1.0), (2, 2.0), (4, 8.0), (10, 30.0)])
def test_retry_delay_doubles_up_to_the_cap(failures, expected):
    assert compute_item_delay(failures - 1, 1.0, 30.0) == expected  # the handler's queue backoff


@pytest.mark.parametrize("uri, kvm, expected", [
    pytest.param("test:///default", True, "test", id="test-driver"),
    pytest.param("test+unix:///default?socket=/run/x/libvirt-sock", True, "test", id="test-driver-of-a-libvirtd"),
    pytest.param("qemu+unix:///system?socket=/run/x/libvirt-sock", True, "kvm", id="kvm-of-a-libvirtd"),
    pytest.param("qemu:///system", True, "kvm", id="kvm"),
    pytest.param("qemu:///system", False, "qemu", id="tcg"),
])
def test_domain_type(uri, kvm, expected):
    assert compute_domain_type(uri, kvm) == expected


def test_the_probe_answer_is_kept_per_node(tmp_path):
    (tmp_path / "domain-type").write_text("qemu\n")
    settings = HandlerSettings(nats_servers=("nats://x",), node_name="n", libvirt_uri="qemu:///system",
                               state_dir=tmp_path)
    assert decide_domain_type(settings) == "qemu"  # recorded: no probe


async def test_key_queue_never_hands_out_a_key_twice_at_once():
    queue = WorkQueue(name="test-handler-rules")  # the handler's queue
    queue.add("a")
    queue.add("a")
    assert len(queue) == 1
    key = await queue.get()
    queue.add("a")  # changed while being processed
    assert len(queue) == 0
    queue.done(key)
    assert len(queue) == 1 and await queue.get() == "a"
    queue.done("a")
    queue.add_after("b", 0.01)
    assert await asyncio.wait_for(queue.get(), 1) == "b"
    queue.shutdown()


def test_domain_stats_are_summed_over_devices():
    stats = {"state.state": 1, "cpu.time": 5000, "vcpu.current": 2, "vcpu.0.time": 10, "vcpu.1.time": 20,
             "net.count": 1, "net.0.name": "vnet0", "net.0.rx.bytes": 100, "block.0.wr.reqs": 3,
             "block.1.wr.reqs": 4, "balloon.current": 262144}
    assert compute_flat_stats(stats) == {"cpu.time": 5000.0, "vcpu.time": 30.0, "net.rx.bytes": 100.0,
                                         "block.wr.reqs": 7.0, "balloon.current": 262144.0}


async def test_events_of_the_handlers_own_start_wake_no_second_sync():
    state = SyncState()
    queued: list[str] = []

    async def everything() -> None:
        raise AssertionError("not expected")

    relay = DomainEventRelay("n", state, bus=None, publish=False, enqueue=queued.append,
                             enqueue_everything=everything, uid_of=lambda key: "", clock=utc_now)
    state.own_events["default_vm1"] = {"Defined", "Started"}  # what the executor sets before its start

    async def events():
        for name, event in [("default_vm1", "Defined"), ("default_vm1", "Started"), ("default_vm2", "Started"),
                            ("default_vm1", "Started"), ("default_vm1", "Stopped")]:
            yield LifecycleEvent(name, "", event, "0")

    await relay.run(events())
    # vm1's own Defined/Started are consumed once; anything after them, and other domains, wake a sync
    assert queued == ["default/vm2", "default/vm1", "default/vm1"]
    assert state.own_events == {}
