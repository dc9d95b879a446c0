"""virtctl start/stop/restart through virt-api's HTTP subresources to the controller and back.

virt-api runs in-process (its aiohttp app on a free port, plain HTTP, a test token) with the
lifecycle subresources registered; virtctl runs as a real subprocess with a kubeconfig.
"""
import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp import web

from controller_harness import NS, VMIS, VMS, SimulatedNodeAgents, make_vm, running_manager, wait_for
from services.virt_api import lifecycle
from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from shared.natsserver import pick_free_port

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-for-virtctl"


async def virtctl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.virtctl.main import main; main()", "--kubeconfig", str(kubeconfig),
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode().strip(), err.decode().strip()


@pytest.fixture
async def api(object_store, tmp_path):
    registry = SubresourceRegistry()
    lifecycle.register(registry)
    app = create_app(object_store, token=TOKEN, subresources=registry)
    runner = web.AppRunner(app)
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    kubeconfig = tmp_path / "kubeconfig"
    apply_kubeconfig(kubeconfig, compute_kubeconfig(f"http://127.0.0.1:{port}", None, TOKEN))
    yield kubeconfig
    await runner.cleanup()


async def printable(store, name):
    return ((await store.get(VMS, NS, name)).get("status") or {}).get("printableStatus")


async def test_virtctl_drives_a_vm_through_start_restart_stop_with_kubevirts_answers(object_store, api):
    store = object_store
    agents = SimulatedNodeAgents(store)
    await agents.start()
    async with running_manager(store):
        await store.create(VMS, make_vm("cli", run_strategy="Halted"))
        code, out, err = await virtctl(api, "restart", "cli")
        assert code == 1
        assert err == 'virtctl: error: Operation cannot be fulfilled on virtualmachine.kubevirt.io "cli": ' \
                      "RunStategy Halted does not support manual restart requests"
        assert await virtctl(api, "start", "cli") == (0, "VM cli was scheduled to start", "")
        await wait_for(lambda: _is(printable(store, "cli"), "Running"), what="Running")
        first = (await store.get(VMIS, NS, "cli"))["metadata"]["uid"]
        code, _, err = await virtctl(api, "start", "cli")  # runStrategy is now Always
        assert code == 1 and "VM is already running" in err
        assert (await virtctl(api, "restart", "cli"))[0] == 0
        await wait_for(lambda: _new_running_vmi(store, "cli", first), what="restarted VMI")
        assert await virtctl(api, "stop", "cli", "--force", "--grace-period", "0") == \
            (0, "VM cli was scheduled to stop", "")
        await wait_for(lambda: _is(printable(store, "cli"), "Stopped"), what="Stopped")
        assert (await store.get(VMS, NS, "cli"))["spec"]["runStrategy"] == "Halted"
        assert await virtctl(api, "start", "cli", "--dry-run", "-n", NS) == \
            (0, "Dry Run execution\nVM cli was scheduled to start", "")
        assert (await store.get(VMS, NS, "cli"))["spec"]["runStrategy"] == "Halted"  # dry run: nothing written
        code, _, err = await virtctl(api, "-n", NS, "pause", "vmi", "missing")
        assert code == 1 and "not found" in err
    await agents.stop()


async def _is(coro, value):
    return (await coro) == value


async def _new_running_vmi(store, name, old_uid):
    vmi = await store.get(VMIS, NS, name)
    return vmi["metadata"]["uid"] != old_uid and (vmi.get("status") or {}).get("phase") == "Running"
