"""VMI freeze/unfreeze: virtctl -> virt-api's HTTP subresources -> a Freeze/Unfreeze command on
the VMI node's handler subject. virt-api runs in-process (aiohttp on a free port, a test token)
on a real nats-server; the handler is a stand-in that answers on the real subject with a
CommandResult and records what it got (the real handler's freeze is tested with the handler)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp import web

from services.virt_api import lifecycle
from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from shared import events
from shared.natsserver import pick_free_port
from tests.integration.api.vm_factory import make_vmi

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-for-freeze"
NS = "default"
VMIS = "virtualmachineinstances"


class StandInHandler:
    """Answers handler commands of one node with ``answer``; records the decoded commands."""

    def __init__(self, bus, node: str, answer: events.CommandResult | None = None) -> None:
        self.bus, self.node, self.answer = bus, node, answer or events.CommandResult()
        self.got: list = []

    async def __aenter__(self) -> "StandInHandler":
        async def reply(msg):
            self.got.append(events.decode_command(msg.data))
            await msg.respond(events.encode(self.answer))
        self.sub = await self.bus.subscribe(events.handler_command_subject(self.node), cb=reply)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.sub.unsubscribe()


@pytest.fixture
async def kubeconfig(object_store, tmp_path):
    registry = SubresourceRegistry()
    lifecycle.register(registry)
    runner = web.AppRunner(create_app(object_store, token=TOKEN, subresources=registry))
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    path = tmp_path / "kubeconfig"
    apply_kubeconfig(path, compute_kubeconfig(f"http://127.0.0.1:{port}", None, TOKEN))
    yield path
    await runner.cleanup()


async def virtctl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.virtctl.main import main; main()", "--kubeconfig", str(kubeconfig),
        "-n", NS, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode().strip(), err.decode().strip()


async def vmi_in_phase(store, name: str, phase: str, node: str | None = "node-a") -> dict:
    vmi = make_vmi(name)
    vmi["metadata"]["namespace"] = NS
    vmi["status"] = {"phase": phase, **({"nodeName": node} if node else {})}
    return await store.create(VMIS, vmi)


async def test_virtctl_freeze_and_unfreeze_reach_the_handler_of_the_vmis_node(object_store, kubeconfig):
    vmi = await vmi_in_phase(object_store, "guest", "Running")
    uid = vmi["metadata"]["uid"]
    async with StandInHandler(object_store.bus, "node-a") as handler:
        assert await virtctl(kubeconfig, "freeze", "guest") == (0, "VMI guest was scheduled to freeze", "")
        assert (await virtctl(kubeconfig, "freeze", "guest", "--unfreeze-timeout", "1m30s"))[:2] == \
            (0, "VMI guest was scheduled to freeze")
        assert await virtctl(kubeconfig, "unfreeze", "guest") == (0, "VMI guest was scheduled to unfreeze", "")
    assert handler.got == [
        events.Freeze(namespace=NS, name="guest", uid=uid, unfreeze_timeout_seconds=300),
        events.Freeze(namespace=NS, name="guest", uid=uid, unfreeze_timeout_seconds=90),
        events.Unfreeze(namespace=NS, name="guest", uid=uid),
    ]


async def test_answers_per_vmi_state_and_body(object_store, kubeconfig):
    await vmi_in_phase(object_store, "waiting", "Scheduling", node=None)
    code, _, err = await virtctl(kubeconfig, "freeze", "missing")
    assert code == 1 and "not found" in err
    assert await virtctl(kubeconfig, "freeze", "waiting") == (
        1, "", 'virtctl: error: Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "waiting": '
               "VM is not running")
    assert await virtctl(kubeconfig, "unfreeze", "waiting") == (
        1, "", 'virtctl: error: Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "waiting": '
               "VMI is not running")
    code, _, err = await virtctl(kubeconfig, "freeze", "waiting", "--unfreeze-timeout", "0s")
    assert code == 2 and "must be at least 1s" in err


async def test_http_body_rules_and_the_handlers_refusal(object_store, kubeconfig):
    import aiohttp

    await vmi_in_phase(object_store, "guest2", "Running", node="node-b")
    url = next(line.split("server:")[1].strip() for line in kubeconfig.read_text().splitlines() if "server:" in line)
    path = f"{url}/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/guest2/freeze"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for body, message in ((b"", "Unfreeze timeout in freeze request is not set"),
                              (b'{"unfreezeTimeout": "5 min"}', "failed to unmarshal unfreeze timeout")):
            async with http.put(path, data=body, headers={"Content-Type": "application/json"}) as resp:
                status = await resp.json()
                assert (resp.status, status["message"]) == (400, message)
        refusal = events.CommandResult(code=409, reason="Conflict", message="VMI does not have guest agent connected")
        async with StandInHandler(object_store.bus, "node-b", refusal):
            async with http.put(path, json={"unfreezeTimeout": "1m"}) as resp:
                status = await resp.json()
                assert (resp.status, status["reason"], status["message"]) == (
                    409, "Conflict", "VMI does not have guest agent connected")
