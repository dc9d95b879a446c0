"""Metrics and Events of the whole control loop (real nats-server, libvirt's test driver): the
VMI phase-count gauge and the phase-transition histogram follow VMs as they start and stop, and
a VM's Events list in order through virt-api (HTTP and the real kubectl binary)."""

from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest
from loop_helpers import NS, VMIS, VMS, get_or_none, make_vm, phase_of, wait_until
from prometheus_client.parser import text_string_to_metric_families

from services.virt_api import lifecycle
from shared.metrics import apply_metrics_server
from shared.natsserver import pick_free_port

pytestmark = pytest.mark.timeout(120)
KUBECTL = shutil.which("kubectl")
NODE = "node-metrics"  # the ``node`` fixture's name (conftest.py); no other test uses it


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url`` (Prometheus text), keyed by (name, sorted labels)."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def running_count(samples) -> float:
    """kubevirt_vmi_phase_count of running VMIs on this test's node (summed over the other labels)."""
    return sum(v for (name, labels), v in samples.items()
               if name == "kubevirt_vmi_phase_count" and dict(labels).get("node") == NODE
               and dict(labels).get("phase") == "running")


def running_transitions(samples) -> float:
    return samples.get(("kubevirt_vmi_phase_transition_time_from_creation_seconds_count",
                        (("phase", "Running"),)), 0.0)


async def running_vmi(store, name):
    vmi = await get_or_none(store, VMIS, name)
    return vmi if phase_of(vmi) == "Running" else None


async def vmi_absent(store, name):
    return await get_or_none(store, VMIS, name) is None


@pytest.fixture
async def metrics_url():
    port = pick_free_port()
    runner = await apply_metrics_server(port)
    yield f"http://127.0.0.1:{port}/metrics"
    await runner.cleanup()


async def test_phase_count_and_transition_histogram_follow_vms(object_store, controller, bridge, node, metrics_url):
    before = await scrape(metrics_url)
    assert running_count(before) == 0
    for name in ("pc-a", "pc-b"):
        await object_store.create(VMS, make_vm(name))
    for name in ("pc-a", "pc-b"):
        await wait_until(lambda n=name: running_vmi(object_store, n))
    await wait_until(lambda: _running_count_is(metrics_url, 2))
    during = await scrape(metrics_url)
    assert running_transitions(during) - running_transitions(before) == 2
    assert during[("kubevirt_workqueue_adds_total", (("name", "vm"),))] > \
        before.get(("kubevirt_workqueue_adds_total", (("name", "vm"),)), 0)
    assert any(name == "kubevirt_store_operation_duration_seconds_count" and dict(labels)["operation"] == "write"
               for name, labels in during)

    await lifecycle.stop_vm(object_store, NS, "pc-a")
    await wait_until(lambda: vmi_absent(object_store, "pc-a"))
    await wait_until(lambda: _running_count_is(metrics_url, 1))
    await object_store.delete(VMS, NS, "pc-b")
    await wait_until(lambda: vmi_absent(object_store, "pc-b"))
    await wait_until(lambda: _running_count_is(metrics_url, 0))


async def _running_count_is(url, value):
    return running_count(await scrape(url)) == value


async def _events(api_url, query):
    async with aiohttp.ClientSession() as session, \
            session.get(f"{api_url}/api/v1/namespaces/{NS}/events", params=query) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["items"]


async def _reasons(api_url, name):
    items = await _events(api_url, {"fieldSelector": f"involvedObject.name={name}"})
    return [(e["involvedObject"]["kind"], e["reason"]) for e in items]


async def test_events_of_a_vm_list_in_order(object_store, controller, bridge, node, api_url, tmp_path):
    await object_store.create(VMS, make_vm("ev-vm"))
    await wait_until(lambda: running_vmi(object_store, "ev-vm"))
    started = [("VirtualMachine", "SuccessfulCreate"), ("VirtualMachineInstance", "Scheduled"),
               ("VirtualMachineInstance", "Created"), ("VirtualMachineInstance", "Started")]
    await wait_until(lambda: _has(api_url, "ev-vm", started))
    await lifecycle.stop_vm(object_store, NS, "ev-vm")
    await wait_until(lambda: vmi_absent(object_store, "ev-vm"))
    stopped = started + [frozenset({("VirtualMachine", "SuccessfulDelete"), ("VirtualMachineInstance", "ShuttingDown"),
                                    ("VirtualMachineInstance", "ShutdownCalled")}),
                         ("VirtualMachineInstance", "Stopped")]
    await wait_until(lambda: _has(api_url, "ev-vm", stopped))
    assert len(await _reasons(api_url, "ev-vm")) == 8, "one Event per transition, none per reconcile"
    vm_only = await _events(api_url, {"fieldSelector": "involvedObject.name=ev-vm,involvedObject.kind=VirtualMachine"})
    assert [e["reason"] for e in vm_only] == ["SuccessfulCreate", "SuccessfulDelete"]
    first = vm_only[0]
    assert (first["type"], first["count"], first["source"]["component"]) == ("Normal", 1, "virt-controller")
    assert first["message"] == "Started the virtual machine by creating the new virtual machine instance ev-vm"

    lines = await _virtctl_events(api_url, tmp_path, "ev-vm")
    assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert [line.split()[2] for line in lines[1:5]] == ["SuccessfulCreate", "Scheduled", "Created", "Started"]
    assert lines[1].split()[3] == "virtualmachine/ev-vm"

    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the HTTP and virtctl parts above passed")
    out = await _kubectl(api_url, "get", "events", "-n", NS, "--field-selector", "involvedObject.name=ev-vm",
                         "-o", "json")
    assert _in_order([(e["involvedObject"]["kind"], e["reason"]) for e in json.loads(out)["items"]], stopped)
    table = await _kubectl(api_url, "get", "events", "-n", NS)
    assert "SuccessfulCreate" in table and "virtualmachine/ev-vm" in table
    described = await _kubectl(api_url, "describe", "vm", "ev-vm", "-n", NS)
    assert "SuccessfulCreate" in described and "SuccessfulDelete" in described


async def _has(api_url, name, wanted):
    return _in_order(await _reasons(api_url, name), wanted)


def _in_order(got, wanted):
    """``got`` starts with ``wanted``, where a set in ``wanted`` matches its members in any order
    (the VM controller's SuccessfulDelete and the VMI's ShuttingDown come from one write)."""
    flat = []
    for item in wanted:
        if isinstance(item, frozenset):
            part = got[len(flat):len(flat) + len(item)]
            if set(part) != item:
                return False
            flat += part
        else:
            flat.append(item)
    return got[:len(flat)] == flat


async def _kubectl(api_url, *args):
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--server", api_url, "--insecure-skip-tls-verify=true", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"HOME": "/nonexistent", "KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"})
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def _virtctl_events(api_url, tmp_path, name):
    """``virtctl events <name>`` (click's runner in a thread: the command runs its own loop)."""
    from click.testing import CliRunner

    from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
    import services.virtctl.events_command  # noqa: F401 - registers the command on the group
    from services.virtctl.main import cli

    config = tmp_path / "kubeconfig"
    apply_kubeconfig(config, compute_kubeconfig(api_url, None, "unused"))
    result = await asyncio.to_thread(CliRunner().invoke, cli, obj={},
                                     args=["--kubeconfig", str(config), "events", name])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()
