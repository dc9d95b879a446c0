"""guestosinfo: virtctl -> virt-api's HTTP subresource -> the VMI's node handler over NATS and back.

virt-api runs in-process (aiohttp app on a free port, test token) with the guestosinfo subresource
registered; virt-controller, scheduler-bridge and a virt-handler on libvirt's test driver run in
this process on a real nats-server; virtctl runs as a subprocess. The test driver has no guest
agent, so the agent-connected event is put into the handler's state by the test (what
hypervisor events would do); the agent commands themselves really go to libvirt and, unanswered,
leave the body's agent fields out.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from loop_helpers import NS, VMIS, VMS, conditions_of, get_or_none, make_scheduling_vmi, make_vm, wait_until
from services.virt_api import guestosinfo
from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from shared.natsserver import pick_free_port

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-guestosinfo"


async def virtctl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.virtctl.main import main; main()", "--kubeconfig", str(kubeconfig),
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode().strip(), err.decode().strip()


@pytest.fixture
async def api(object_store, tmp_path):
    registry = SubresourceRegistry()
    assert "services.virt_api.guestosinfo" in apply_subresource_modules(registry)  # the way virt-api loads it
    runner = web.AppRunner(create_app(object_store, token=TOKEN, subresources=registry))
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    kubeconfig = tmp_path / "kubeconfig"
    apply_kubeconfig(kubeconfig, compute_kubeconfig(f"http://127.0.0.1:{port}", None, TOKEN))
    yield kubeconfig
    await runner.cleanup()


def conflict_line(name: str, why: str) -> str:
    return f'virtctl: error: Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "{name}": {why}'


async def test_guestosinfo_answers_like_kubevirt_and_reaches_the_handler(object_store, controller, bridge, node,
                                                                         api):
    store = object_store
    code, out, err = await virtctl(api, "guestosinfo", "nothere")
    assert (code, out) == (1, "")
    assert err == 'virtctl: error: virtualmachineinstances.kubevirt.io "nothere" not found'

    # never scheduled (no node matches): 409 VMI is not running
    await store.create(VMIS, make_scheduling_vmi("pending", memory="64Mi", nodeSelector={"no-such": "label"}))
    assert await virtctl(api, "guestosinfo", "pending") == (1, "", conflict_line("pending", "VMI is not running"))

    await store.create(VMS, make_vm("web"))
    vmi = await wait_until(lambda: _running(store, "web"))
    assert await virtctl(api, "guestosinfo", "web") == (
        1, "", conflict_line("web", guestosinfo.NO_AGENT))

    # the agent connects (hypervisor agent-lifecycle event); the handler sets AgentConnected itself
    node.agent.agent_connected["default_web"] = True
    node.agent.queue.add(f"{NS}/web")
    await wait_until(lambda: _condition(store, "web", "AgentConnected"))
    code, out, err = await virtctl(api, "guestosinfo", "web")
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert body == {"apiVersion": "v1", "kind": "VirtualMachineInstanceGuestAgentInfo", "metadata": {}, "os": {}}
    assert vmi["status"]["nodeName"] == node.name


async def _running(store, name):
    vmi = await get_or_none(store, VMIS, name)
    return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None


async def _condition(store, name, ctype):
    return conditions_of(await get_or_none(store, VMIS, name)).get(ctype, {}).get("status") == "True"
