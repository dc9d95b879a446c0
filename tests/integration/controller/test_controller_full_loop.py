"""The whole loop with the real scheduler-bridge and virt-handler (libvirt's test driver) as
processes and the controller in-process: a VM starts, runs, is paused and unpaused through the
handler's command subject, and stops, in KubeVirt's order."""
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from controller_harness import NS, VMIS, VMS, PrintableStatusRecorder, make_vm, running_manager, wait_for
from services.virt_api import lifecycle
from services.virt_handler.simulated_node import apply_test_node_file
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def node_agents(nats_server, object_store, tmp_path):
    uri = apply_test_node_file(tmp_path / "host.xml", cpus=8, memory_bytes=8 * 2**30)
    common = ["--nats", nats_server.url, "--bucket-prefix", object_store.prefix, "--log-level", "WARNING"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "services.scheduler_bridge.main", *common], cwd=ROOT,
                         stdout=open(tmp_path / "scheduler.log", "w"), stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "services.virt_handler.main", *common, "--node-name", "loop-node",
                          "--libvirt-uri", uri, "--state-dir", str(tmp_path / "handler")], cwd=ROOT,
                         stdout=open(tmp_path / "handler.log", "w"), stderr=subprocess.STDOUT),
    ]
    yield
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _printable_is(store, name, value):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus") == value


async def _gone(store, name):
    try:
        await store.get(VMIS, NS, name)
    except Exception as err:
        return type(err).__name__ == "NotFound"
    return False


async def test_vm_runs_on_the_test_driver_and_stops_through_kubevirts_statuses(object_store, node_agents):
    store = object_store
    await wait_for(lambda: _node(store), timeout=30, what="node registered by virt-handler")
    recorder = PrintableStatusRecorder(store, "loop")
    recorder.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("loop", run_strategy="Always"))
        await wait_for(lambda: _printable_is(store, "loop", "Running"), timeout=30, what="Running")
        vmi = await store.get(VMIS, NS, "loop")
        assert vmi["status"]["nodeName"] == "loop-node"
        assert [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]] == \
            ["Pending", "Scheduling", "Scheduled", "Running"]
        await _assert_lossless(store, "loop")
        await lifecycle.pause_vmi(store, store.bus, NS, "loop")
        await wait_for(lambda: _printable_is(store, "loop", "Paused"), timeout=30, what="Paused")
        await _assert_lossless(store, "loop")
        await lifecycle.unpause_vmi(store, store.bus, NS, "loop")
        await wait_for(lambda: _printable_is(store, "loop", "Running"), timeout=30, what="Running again")
        await lifecycle.stop_vm(store, NS, "loop")
        await wait_for(lambda: _printable_is(store, "loop", "Stopped"), timeout=30, what="Stopped")
        await wait_for(lambda: _gone(store, "loop"), timeout=30, what="VMI removed")
    await recorder.stop()
    assert recorder.seen == ["Starting", "Running", "Paused", "Running", "Stopping", "Stopped"]


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


async def _assert_lossless(store, name):
    """The stored VM and VMI, as every service wrote them, encode back unchanged from the
    Structs virt-controller decodes them into (its whole-object writes lose nothing but
    ``null`` values, which Go reads as unset)."""
    for plural, typ in ((VMS, VirtualMachine), (VMIS, VirtualMachineInstance)):
        stored = _without_nulls(await store.get(plural, NS, name))
        assert msgspec.to_builtins(msgspec.convert(stored, typ)) == stored, plural


async def _node(store):
    items, _ = await store.list("nodes")
    return [n for n in items if n["metadata"]["name"] == "loop-node"]
