"""One trace per snapshot and per restore (issue 11 item 6): a VirtualMachineSnapshot created
through virt-api is one trace holding virt-api's create span, virt-snapshot's reconciles of the
snapshot and its content, and — for a running VM with a connected guest agent — virt-handler's
``freeze``, ``backup <volume>`` and ``thaw`` spans, reached through the bus commands; a
VirtualMachineRestore is a trace of its own. Real nats-server, virt-api over HTTP in this
process, virt-controller, scheduler-bridge, virt-snapshot (its local provisioner makes the claim
files with qemu-img) and a virt-handler on libvirt's test driver, whose STAND-IN BACKUP copies the
claim. The guest agent connects the way libvirt says it does: an ``AgentConnected`` agent
lifecycle event of the domain (the test driver has no guest agent, so the event is published on
the gateway's event stream; the handler sets the VMI's condition itself). ``virtctl trace
vmsnapshot/<name>`` and ``vmrestore/<name>`` read the same traces back from the JetStream trace
store."""

from __future__ import annotations

import asyncio
import contextlib
import shutil

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from loop_helpers import NS, VMIS, VMS, InProcessNode, conditions_of, get_or_none, make_vm, phase_of, wait_until
from test_tracing_failures import virtctl_trace

from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virt_handler.hypervisor_types import LifecycleEvent
from services.virt_snapshot.manager import SnapshotManager
from shared import tracing

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")]

CORE = f"/api/v1/namespaces/{NS}"
V1 = f"/apis/kubevirt.io/v1/namespaces/{NS}"
SNAP = f"/apis/snapshot.kubevirt.io/v1beta1/namespaces/{NS}"
SUB = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}"
SNAPSHOT_CREATE = "POST /apis/snapshot.kubevirt.io/v1beta1/namespaces/{namespace}/virtualmachinesnapshots"
RESTORE_CREATE = "POST /apis/snapshot.kubevirt.io/v1beta1/namespaces/{namespace}/virtualmachinerestores"


@pytest.fixture
def state_dir(tmp_path):
    """The installation's state directory: claims under ``pvcs``, copies under ``volume-snapshots``."""
    (tmp_path / "state" / "pvcs").mkdir(parents=True)
    return tmp_path / "state"


@pytest.fixture
async def api(object_store, traced):
    """virt-api served from this process with the subresource modules virt-api's main loads
    (``stop``)."""
    registry = SubresourceRegistry()
    assert "services.virt_api.lifecycle" in apply_subresource_modules(registry)
    server = TestServer(create_app(object_store, token=None, subresources=registry))
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
        yield session
    await server.close()


@pytest.fixture
async def pvc_node(object_store, tmp_path, state_dir, traced):
    """A virt-handler on libvirt's test driver reading claims from ``<state>/pvcs`` (as ``virtctl
    up`` passes ``--pvc-root``)."""
    running = await InProcessNode(object_store, "node-snap", tmp_path, pvc_root=state_dir / "pvcs").start()
    yield running
    await running.close()


@pytest.fixture
async def virt_snapshot(object_store, state_dir, traced):
    """virt-snapshot (snapshot, content, restore and provisioner controllers) in this process."""
    manager = SnapshotManager(object_store, "trace-snap", storage_dir=state_dir, lease_duration=3.0,
                              renew_deadline=2.0, retry_period=0.3)
    task = asyncio.get_running_loop().create_task(manager.run())
    yield manager
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def post(api, path, body):
    """POST ``body``; (trace id virt-api answered, created object)."""
    async with api.post(path, json=body) as resp:
        assert resp.status == 201, await resp.text()
        return resp.headers["X-Trace-Id"], await resp.json()


async def get(store, plural, name):
    return await get_or_none(store, plural, name)


async def status_of(store, plural, name):
    return ((await get(store, plural, name)) or {}).get("status") or {}


def vm_with_claim(name, claim):
    vm = make_vm(name, run_strategy="Always", grace=0)
    spec = vm["spec"]["template"]["spec"]
    spec["domain"]["devices"]["disks"] = [{"name": claim, "disk": {"bus": "virtio"}}]
    spec["volumes"] = [{"name": claim, "persistentVolumeClaim": {"claimName": claim}}]
    return vm


def snapshot_body(name, vm):
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}}


def restore_body(name, snapshot, target):
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": name},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
                     "virtualMachineSnapshotName": snapshot}}


def spans_of(memory, trace_id):
    return [s for s in memory.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]


def label(span):
    return f"{span.resource.attributes['service.name']} {span.name}"


def ancestors(span, by_id):
    """Labels of ``span``'s ancestors, nearest first (within the trace)."""
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(label(span))
    return chain


def only(spans, service, name):
    found = [s for s in spans if label(s) == f"{service} {name}"]
    assert len(found) == 1, (service, name, sorted(label(s) for s in spans))
    return found[0]


def waterfall_labels(output):
    """``(service, span name indented by depth)`` of each waterfall line of ``virtctl trace``
    (the columns cut where the header's SERVICE, SPAN and STATUS start)."""
    lines = output.splitlines()
    header = lines[1]
    service_at, span_at, status_at = header.index("SERVICE"), header.index("SPAN"), header.index("STATUS")
    return [(line[service_at:span_at].strip(), line[span_at:status_at].rstrip()) for line in lines[2:]]


async def test_a_snapshot_and_a_restore_are_each_one_trace_across_api_snapshot_and_handler(
        nats_server, object_store, traced, api, controller, bridge, pvc_node, virt_snapshot, state_dir):
    memory, _ = traced
    store = object_store
    await post(api, f"{CORE}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}})
    await wait_until(lambda: _pvc_bound(store, "data"))
    assert (state_dir / "pvcs" / NS / "data" / "disk.img").is_file()

    vm_trace, _ = await post(api, f"{V1}/virtualmachines", vm_with_claim("demo", "data"))
    vmi = await wait_until(lambda: _running(store, "demo"))
    assert vmi["status"]["nodeName"] == pvc_node.name
    domain = await pvc_node.hypervisor.get_domain("default_demo")
    pvc_node.hypervisor._publish(LifecycleEvent("default_demo", domain.uuid, "AgentConnected", "1"))
    await wait_until(lambda: _agent_connected(store, "demo"))

    # -- the snapshot: one trace from virt-api through virt-snapshot to the handler ---------------
    snap_trace, created = await post(api, f"{SNAP}/virtualmachinesnapshots", snapshot_body("snap1", "demo"))
    assert created["metadata"]["annotations"][tracing.TRACE_ID_ANNOTATION] == snap_trace != vm_trace
    uid = created["metadata"]["uid"]
    status = await wait_until(lambda: _snapshot_ready(store, "snap1"), timeout=20)
    assert status["phase"] == "Succeeded"
    assert status["indications"] == ["GuestAgent", "Online"]
    assert (state_dir / "volume-snapshots" / NS / f"vmsnapshot-{uid}-volume-data.qcow2").is_file()
    await wait_until(lambda: _unlocked(store, "demo"))
    await asyncio.sleep(0.3)  # the last reconciles after the unlock end their spans

    spans = spans_of(memory, snap_trace)
    by_id = {s.context.span_id: s for s in spans}
    root = only(spans, "virt-api", SNAPSHOT_CREATE)
    assert root.parent is None and root.attributes["http.response.status_code"] == 201
    reconciles = [s for s in spans if label(s) == "virt-snapshot reconcile VirtualMachineSnapshot"]
    contents = [s for s in spans if label(s) == "virt-snapshot reconcile VirtualMachineSnapshotContent"]
    assert reconciles and contents
    assert all(s.parent.span_id == root.context.span_id for s in reconciles + contents)

    freeze = only(spans, "virt-handler", "freeze")
    backup = only(spans, "virt-handler", "backup data")
    # the thaw sent once the point in time is fixed; a later reconcile of the content that still
    # sees ``fsFreezeStatus: frozen`` in its cache sends another (idempotent) Unfreeze
    thaws = sorted((s for s in spans if label(s) == "virt-handler thaw"), key=lambda s: s.start_time)
    assert thaws, sorted(label(s) for s in spans)
    thaw = thaws[0]
    # each handler span is under virt-snapshot's span of the command that asked for it, under a
    # reconcile of the content, under virt-api's create
    assert ancestors(freeze, by_id)[-3:] == ["virt-snapshot freeze", "virt-snapshot reconcile "
                                             "VirtualMachineSnapshotContent", f"virt-api {SNAPSHOT_CREATE}"]
    assert ancestors(backup, by_id)[-3:] == ["virt-snapshot begin copies", "virt-snapshot reconcile "
                                             "VirtualMachineSnapshotContent", f"virt-api {SNAPSHOT_CREATE}"]
    assert all(ancestors(t, by_id)[-3:] == ["virt-snapshot thaw", "virt-snapshot reconcile "
                                            "VirtualMachineSnapshotContent", f"virt-api {SNAPSHOT_CREATE}"]
               for t in thaws)
    assert freeze.end_time <= backup.start_time <= thaw.start_time  # frozen while the point in time is fixed
    assert backup.attributes["kubevirt.volume"] == "data" and backup.attributes["kubevirt.stand_in"] is True
    assert all(s.status.is_ok for s in (freeze, backup, *thaws))

    result = await virtctl_trace(store, "vmsnapshot/snap1")
    print(result.output)  # the waterfall, shown when the test fails
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"trace {snap_trace}"
    rows = waterfall_labels(result.output)
    assert rows[0] == ("virt-api", SNAPSHOT_CREATE)
    names = [(service, name.strip()) for service, name in rows]
    for wanted in [("virt-snapshot", "reconcile VirtualMachineSnapshot"),
                   ("virt-snapshot", "reconcile VirtualMachineSnapshotContent"),
                   ("virt-handler", "freeze"), ("virt-handler", "backup data"), ("virt-handler", "thaw")]:
        assert wanted in names, result.output
    assert names.index(("virt-handler", "freeze")) < names.index(("virt-handler", "backup data")) < \
        names.index(("virt-handler", "thaw")), result.output

    # -- the restore of the stopped VM: a trace of its own ----------------------------------------
    async with api.put(f"{SUB}/virtualmachines/demo/stop", json={}) as resp:
        assert resp.status == 202, await resp.text()
    await wait_until(lambda: _gone(store, VMIS, "demo"))
    restore_trace, created = await post(api, f"{SNAP}/virtualmachinerestores", restore_body("r1", "snap1", "demo"))
    assert created["metadata"]["annotations"][tracing.TRACE_ID_ANNOTATION] == restore_trace
    assert restore_trace not in (snap_trace, vm_trace)
    await wait_until(lambda: _restore_complete(store, "r1"), timeout=20)
    await asyncio.sleep(0.3)

    spans = spans_of(memory, restore_trace)
    root = only(spans, "virt-api", RESTORE_CREATE)
    assert root.parent is None
    by_id = {s.context.span_id: s for s in spans}
    reconciles = [s for s in spans if label(s) == "virt-snapshot reconcile VirtualMachineRestore"]
    assert len(reconciles) >= 2 and all(s.parent.span_id == root.context.span_id for s in reconciles)
    assert all(s.status.is_ok for s in reconciles)
    # the restored claim is created in a reconcile of the restore: the provisioner's copy of the
    # volume snapshot into it is in the restore's trace
    copy = only(spans, "virt-snapshot", f"copy vmsnapshot-{uid}-volume-data")
    assert ancestors(copy, by_id) == ["virt-snapshot reconcile PersistentVolumeClaim",
                                      "virt-snapshot reconcile VirtualMachineRestore", f"virt-api {RESTORE_CREATE}"]
    assert copy.status.is_ok and copy.attributes["kubevirt.claim"].startswith("restore-")
    assert not [s for s in spans if s.resource.attributes["service.name"] == "virt-handler"]  # the VM is stopped

    result = await virtctl_trace(store, "vmrestore/r1")
    print(result.output)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"trace {restore_trace}"
    rows = waterfall_labels(result.output)
    assert rows[0] == ("virt-api", RESTORE_CREATE)
    assert ("virt-snapshot", "  reconcile VirtualMachineRestore") in rows, result.output
    assert ("virt-snapshot", f"      copy vmsnapshot-{uid}-volume-data") in rows, result.output


async def _pvc_bound(store, name):
    return (await status_of(store, "persistentvolumeclaims", name)).get("phase") == "Bound"


async def _running(store, name):
    vmi = await get(store, VMIS, name)
    return vmi if phase_of(vmi) == "Running" else None


async def _agent_connected(store, name):
    return conditions_of(await get(store, VMIS, name)).get("AgentConnected", {}).get("status") == "True"


async def _snapshot_ready(store, name):
    status = await status_of(store, "virtualmachinesnapshots", name)
    return status if status.get("readyToUse") else None


async def _unlocked(store, name):
    return not (await status_of(store, VMS, name)).get("snapshotInProgress")


async def _gone(store, plural, name):
    return await get(store, plural, name) is None


async def _restore_complete(store, name):
    return (await status_of(store, "virtualmachinerestores", name)).get("complete") is True
