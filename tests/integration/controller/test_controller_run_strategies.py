"""Each run strategy behaves as KubeVirt's table, with lifecycle subresources (start/stop/restart)
answering 202/409 as KubeVirt does. Scheduler and handler are stand-ins writing VMI status."""
import pytest

from controller_harness import (
    NS, VMIS, VMS, SimulatedNodeAgents, final, make_vm, running_manager, update_vmi_status, wait_for,
)
from shared.errors import Conflict, NotFound
from services.virt_api import lifecycle

pytestmark = pytest.mark.timeout(60)


async def printable(store, name):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus")


async def vmi_uid(store, name):
    try:
        vmi = await store.get(VMIS, NS, name)
    except NotFound:
        return None
    return vmi["metadata"]["uid"]


async def running_vmi(store, name, *, not_uid=None):
    """Wait for a Running VMI (other than ``not_uid``); returns its uid."""
    async def check():
        vmi = await store.get(VMIS, NS, name)
        uid = vmi["metadata"]["uid"]
        return uid if (vmi.get("status") or {}).get("phase") == "Running" and uid != not_uid else None
    return await wait_for(check, what=f"{name} Running")


async def is_status(store, name, value):
    return await printable(store, name) == value


@pytest.fixture
async def cluster(object_store):
    agents = SimulatedNodeAgents(object_store)
    await agents.start()
    async with running_manager(object_store) as manager:
        yield object_store, manager
    await agents.stop()


async def test_always_restarts_after_a_clean_guest_shutdown(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("a1", run_strategy="Always"))
    first = await running_vmi(store, "a1")
    await update_vmi_status(store, "a1", final("Succeeded"))
    second = await running_vmi(store, "a1", not_uid=first)
    assert second != first
    await wait_for(lambda: is_status(store, "a1", "Running"))
    with pytest.raises(Conflict) as err:
        await lifecycle.start_vm(store, NS, "a1")
    assert err.value.code == 409
    assert "VM is already running" in err.value.message


@pytest.mark.parametrize("strategy", ["Always", "Once"])
async def test_start_without_vmi_is_409_for_strategies_that_start_by_themselves(object_store, strategy):
    store = object_store  # no controller running: the VM has no VMI yet
    await store.create(VMS, make_vm("a2", run_strategy=strategy))
    with pytest.raises(Conflict) as err:
        await lifecycle.start_vm(store, NS, "a2")
    assert err.value.to_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "a2": '
                   f"{strategy} does not support manual start requests",
        "reason": "Conflict", "code": 409,
        "details": {"name": "a2", "group": "kubevirt.io", "kind": "virtualmachine"},
    }


async def test_rerun_on_failure_stays_stopped_after_success_and_restarts_after_failure(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("r1", run_strategy="RerunOnFailure"))
    first = await running_vmi(store, "r1")
    await update_vmi_status(store, "r1", final("Failed"))
    second = await running_vmi(store, "r1", not_uid=first)
    await update_vmi_status(store, "r1", final("Succeeded"))
    await wait_for(lambda: is_status(store, "r1", "Stopped"), what="Stopped")
    await wait_for(lambda: _none(vmi_uid(store, "r1")), what="VMI deleted")
    assert await vmi_uid(store, "r1") is None
    # a manual start brings it back
    await lifecycle.start_vm(store, NS, "r1")
    third = await running_vmi(store, "r1", not_uid=second)
    assert third not in (first, second)


async def test_manual_stays_stopped_until_started_and_after_guest_shutdown(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("m1", run_strategy="Manual"))
    await wait_for(lambda: is_status(store, "m1", "Stopped"))
    assert await vmi_uid(store, "m1") is None
    with pytest.raises(Conflict) as err:
        await lifecycle.stop_vm(store, NS, "m1")
    assert "VM is not running" in err.value.message
    await lifecycle.start_vm(store, NS, "m1")
    first = await running_vmi(store, "m1")
    await update_vmi_status(store, "m1", final("Succeeded"))
    await wait_for(lambda: is_status(store, "m1", "Stopped"))
    assert await vmi_uid(store, "m1") == first  # never restarted by itself
    await lifecycle.restart_vm(store, NS, "m1")
    await running_vmi(store, "m1", not_uid=first)
    await lifecycle.stop_vm(store, NS, "m1")
    await wait_for(lambda: is_status(store, "m1", "Stopped"))
    await wait_for(lambda: _none(vmi_uid(store, "m1")), what="VMI deleted")


async def test_halted_has_no_vmi_and_refuses_restart_with_409(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("h1", run_strategy="Halted"))
    await wait_for(lambda: is_status(store, "h1", "Stopped"))
    assert await vmi_uid(store, "h1") is None
    with pytest.raises(Conflict) as err:
        await lifecycle.restart_vm(store, NS, "h1")
    assert err.value.to_status()["message"] == \
        'Operation cannot be fulfilled on virtualmachine.kubevirt.io "h1": ' \
        "RunStategy Halted does not support manual restart requests"
    await lifecycle.start_vm(store, NS, "h1")
    vm = await store.get(VMS, NS, "h1")
    assert vm["spec"]["runStrategy"] == "Always"
    await running_vmi(store, "h1")
    await lifecycle.stop_vm(store, NS, "h1")
    assert (await store.get(VMS, NS, "h1"))["spec"]["runStrategy"] == "Halted"
    await wait_for(lambda: _none(vmi_uid(store, "h1")), what="VMI deleted")


async def test_running_false_alias_is_halted_and_true_is_always(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("al", run_strategy=None, running=False))
    await wait_for(lambda: is_status(store, "al", "Stopped"))
    await lifecycle.start_vm(store, NS, "al")
    assert (await store.get(VMS, NS, "al"))["spec"]["running"] is True
    await running_vmi(store, "al")


async def test_once_runs_once_and_leaves_the_final_vmi(cluster):
    store, _ = cluster
    await store.create(VMS, make_vm("o1", run_strategy="Once"))
    first = await running_vmi(store, "o1")
    await update_vmi_status(store, "o1", final("Succeeded"))
    await wait_for(lambda: is_status(store, "o1", "Stopped"))
    assert await vmi_uid(store, "o1") == first
    with pytest.raises(Conflict):
        await lifecycle.restart_vm(store, NS, "o1")


async def test_vmi_failing_before_running_puts_the_vm_in_crash_loop_backoff(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store, auto_run=False)
    await agents.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("c1", run_strategy="Always"))
        first = await wait_for(lambda: vmi_uid(store, "c1"))
        await wait_for(lambda: _phase_is(store, "c1", "Scheduled"))
        await update_vmi_status(store, "c1", final("Failed"))
        await wait_for(lambda: is_status(store, "c1", "CrashLoopBackOff"), what="CrashLoopBackOff")
        status = (await store.get(VMS, NS, "c1"))["status"]
        assert status["startFailure"]["consecutiveFailCount"] == 1
        assert status["startFailure"]["lastFailedVMIUID"] == first
        assert await vmi_uid(store, "c1") is None  # the backoff (10-15 s) holds the next start
    await agents.stop()


async def _phase_is(store, name, phase):
    return ((await store.get(VMIS, NS, name)).get("status") or {}).get("phase") == phase


async def _none(coro):
    return (await coro) is None
