"""pause / unpause / softreboot: KubeVirt's checks in virt-api, then a request/reply command to
the VMI's node handler (here a stand-in answering on the real subject with CommandResult)."""
import pytest

from controller_harness import NS, VMIS, running, scheduled, update_vmi_status
from shared import events
from shared.errors import ApiError, Conflict, ServiceUnavailable
from services.virt_api import lifecycle

pytestmark = pytest.mark.timeout(30)


def bare_vmi(name):
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}},
            "status": {"phase": "Scheduling"}}


class StandInHandler:
    """Answers handler commands for one node; records what it got."""

    def __init__(self, bus, node, answer=None):
        self.bus, self.node, self.answer = bus, node, answer or events.CommandResult()
        self.got = []

    async def start(self):
        async def reply(msg):
            self.got.append(events.decode_command(msg.data))
            await msg.respond(events.encode(self.answer))
        self.sub = await self.bus.subscribe(events.handler_command_subject(self.node), cb=reply)

    async def stop(self):
        await self.sub.unsubscribe()


async def running_vmi(store, name, node):
    created = await store.create(VMIS, bare_vmi(name))
    await update_vmi_status(store, name, scheduled(node))
    await update_vmi_status(store, name, running)
    return created["metadata"]["uid"]


async def test_pause_checks_then_commands_the_handler_of_the_vmis_node(object_store):
    store = object_store
    uid = await running_vmi(store, "p1", "node.one")
    handler = StandInHandler(store.bus, "node.one")
    await handler.start()
    await lifecycle.pause_vmi(store, store.bus, NS, "p1")
    assert handler.got == [events.Pause(namespace=NS, name="p1", uid=uid)]
    with pytest.raises(Conflict) as err:
        await lifecycle.unpause_vmi(store, store.bus, NS, "p1")
    assert err.value.message.endswith(": VMI is not paused")

    def paused(status):
        status = dict(status)
        status["conditions"] = list(status.get("conditions") or []) + [
            {"type": "Paused", "status": "True", "reason": "PausedByUser"}]
        return status
    await update_vmi_status(store, "p1", paused)
    with pytest.raises(Conflict) as err:
        await lifecycle.pause_vmi(store, store.bus, NS, "p1")
    assert err.value.message.endswith(": VMI is already paused")
    with pytest.raises(Conflict) as err:
        await lifecycle.soft_reboot_vmi(store, store.bus, NS, "p1")
    assert err.value.message.endswith(": VMI is paused")
    await lifecycle.unpause_vmi(store, store.bus, NS, "p1")
    assert handler.got[-1] == events.Unpause(namespace=NS, name="p1", uid=uid)
    await handler.stop()


async def test_commands_on_a_vmi_that_is_not_running_are_409(object_store):
    store = object_store
    await store.create(VMIS, bare_vmi("p2"))
    for call, text in ((lifecycle.pause_vmi, "VM is not running"), (lifecycle.unpause_vmi, "VMI is not running"),
                       (lifecycle.soft_reboot_vmi, "VM is not running")):
        with pytest.raises(Conflict) as err:
            await call(store, store.bus, NS, "p2")
        assert err.value.message == f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "p2": {text}'


async def test_the_handlers_refusal_and_its_absence_reach_the_caller(object_store):
    store = object_store
    await running_vmi(store, "p3", "node-two")
    with pytest.raises(ServiceUnavailable) as err:
        await lifecycle.soft_reboot_vmi(store, store.bus, NS, "p3")
    assert "node-two" in err.value.message
    handler = StandInHandler(store.bus, "node-two", events.CommandResult(code=409, reason="Conflict",
                                                                      message="guest agent not connected"))
    await handler.start()
    with pytest.raises(ApiError) as err:
        await lifecycle.soft_reboot_vmi(store, store.bus, NS, "p3")
    assert (err.value.code, err.value.reason, err.value.message) == (409, "Conflict", "guest agent not connected")
    await handler.stop()
