"""Store writes for one VM start stay within the B2 budget and nothing is written at rest."""
import asyncio

import pytest

from controller_harness import NS, VMS, SimulatedNodeAgents, make_vm, running_manager, wait_for
from shared.store.keys import compute_bucket, stream_name

pytestmark = pytest.mark.timeout(60)


async def writes(store, plural):
    """Messages ever stored in the bucket of ``plural`` (its stream's last sequence)."""
    try:
        info = await store.bus.jetstream().stream_info(stream_name(compute_bucket(store.prefix, plural)))
    except Exception:
        return 0
    return info.state.last_seq


async def test_a_vm_start_costs_four_vmi_writes_and_two_vm_status_writes_then_none(object_store):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("w1"))
        await wait_for(lambda: _printable(store, "w1", "Running"), what="Running")
        await asyncio.sleep(1.0)  # let every controller settle
        vmi_writes = await writes(store, "virtualmachineinstances")
        vm_writes = await writes(store, VMS)
        # VMI: create (VM controller), Scheduling (VMI controller), Scheduled (scheduler), Running (handler)
        assert vmi_writes == 4
        # VM: the user's create, then status Starting and Running from the VM controller
        assert vm_writes == 3
        await asyncio.sleep(1.5)
        assert (await writes(store, "virtualmachineinstances"), await writes(store, VMS)) == (4, 3), \
            "no writes at steady state"
    await agents.stop()


async def _printable(store, name, value):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus") == value
