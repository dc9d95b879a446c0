"""A restore through the real restore controller with the CSI VolumeSnapshotter: the restored
claims are created in the (mock) Kubernetes cluster, not in the store; the test binds them as a
CSI driver would; the controller, which gets no informer events for them, polls until they are
Bound and then rewrites the VM to them. The mock API: tests/mock_kubernetes_api.py (no API server
can run here)."""

from __future__ import annotations

import asyncio

import pytest

from mock_kubernetes_api import serve_mock
from polling import wait_until
from restore_helpers import (
    CONTENTS,
    NS,
    PVCS,
    RESTORES,
    SNAPSHOTS,
    VMIS,
    VMS,
    claim_body,
    complete,
    condition,
    create_restore,
    create_vm,
    make_snapshot,
    restore_state,
)
from services.virt_snapshot.csi_snapshotter import CsiSnapshotter
from shared.kube_client import api_client_from
from services.virt_snapshot.restore_controller import RestoreController
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.events_recorder import EventRecorder
from shared.informer import Informer
from shared.tasks import cancel_and_wait
from shared.workers import start_workers

SOURCE_CLAIM = claim_body("data-claim", "1Gi", storageClassName="csi-hostpath")


@pytest.fixture
async def csi_restores(object_store, tmp_path):
    """(mock API, the restore controller with a CsiSnapshotter on it) running on the store."""
    async with serve_mock(tmp_path) as (mock, kubeconfig):
        snapshotter = CsiSnapshotter(api_client_from(kubeconfig), request_timeout=5.0, claim_poll_interval=0.2)
        informers = {
            "vms": Informer(object_store, VMS, decode=VirtualMachine),
            "vmis": Informer(object_store, VMIS, decode=VirtualMachineInstance),
            "snapshots": Informer(object_store, SNAPSHOTS, decode=VirtualMachineSnapshot),
            "contents": Informer(object_store, CONTENTS, decode=VirtualMachineSnapshotContent),
            "restores": Informer(object_store, RESTORES, decode=VirtualMachineRestore),
            "pvcs": Informer(object_store, PVCS, decode=PersistentVolumeClaim),
        }
        controller = RestoreController(object_store, recorder=EventRecorder(object_store, "virt-snapshot"),
                                       claims=snapshotter, **informers)
        for informer in informers.values():
            informer.start()
        await asyncio.gather(*(i.wait_synced(10) for i in informers.values()))
        controller.enqueue_all()
        tasks = start_workers(controller.queue, controller.reconcile, 2, name="restore")
        try:
            yield mock
        finally:
            await cancel_and_wait(tasks)
            for informer in informers.values():
                await informer.stop()
            snapshotter.close()


async def _snapshot_of_vm1(store, tmp_path):
    vm = await create_vm(store, "vm1", "data-claim")
    _, copy = await make_snapshot(store, tmp_path / "copies", vm, SOURCE_CLAIM)
    return vm, copy


async def test_restore_creates_the_claims_in_the_cluster_and_waits_until_bound(object_store, csi_restores,
                                                                                 tmp_path):
    store, mock = object_store, csi_restores
    vm, copy = await _snapshot_of_vm1(store, tmp_path)
    uid = (await create_restore(store, "r1", "vm1"))["metadata"]["uid"]
    claim = f"restore-{uid}-data"
    await wait_until(lambda: (NS, claim) in mock.claims, timeout=20)
    made = mock.claims[(NS, claim)]
    assert made["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                          "name": copy}
    assert made["spec"]["dataSourceRef"] == made["spec"]["dataSource"]
    assert made["spec"]["storageClassName"] == "csi-hostpath"
    assert made["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert "ownerReferences" not in made["metadata"]  # the VM is not in the cluster
    assert made["metadata"]["labels"]["restore.kubevirt.io/source-vm-name"] == "vm1"
    assert made["metadata"]["annotations"]["restore.kubevirt.io/name"] == "r1"

    # Pending in the cluster: the restore waits (looking again every 0.2 s), nothing in the store
    await asyncio.sleep(1.0)
    status = await restore_state(store, "r1")
    assert not status["complete"]
    assert condition(status, "Progressing") == ("True", "Creating new PVCs")
    assert status["restores"] == [{"volumeName": "data", "persistentVolumeClaim": claim, "volumeSnapshotName": copy}]
    assert "restore.kubevirt.io/lastRestoreUID" not in ((await store.get(VMS, NS, "vm1"))["metadata"].get(
        "annotations") or {})
    gets = [p for m, p in mock.requests if m == "GET" and p.endswith(f"/persistentvolumeclaims/{claim}")]
    assert len(gets) >= 3  # polled, not woken by events
    assert (await store.list(PVCS, NS))[0] == []

    mock.bind_claim(claim)  # the CSI driver provisioned it from the VolumeSnapshot
    status = await complete(store, "r1")
    assert condition(status, "Ready") == ("True", "Operation complete")
    restored = await store.get(VMS, NS, "vm1")
    assert restored["metadata"]["uid"] == vm["metadata"]["uid"]
    assert restored["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == f"r1-{uid}"
    assert restored["spec"]["template"]["spec"]["volumes"][1] == {"name": "data",
                                                                  "persistentVolumeClaim": {"claimName": claim}}
    assert "restoreInProgress" not in (restored.get("status") or {})
    assert [m for m, p in mock.requests if p == f"/api/v1/namespaces/{NS}/persistentvolumeclaims"] == ["POST"]
    assert (await store.list(PVCS, NS))[0] == []


async def test_in_place_restore_replaces_the_cluster_claim(object_store, csi_restores, tmp_path):
    store, mock = object_store, csi_restores
    mock.add_claim("data-claim", "csi-hostpath")  # the original, Bound, not made by the restore
    await _snapshot_of_vm1(store, tmp_path)
    uid = (await create_restore(store, "r1", "vm1", volumeRestorePolicy="InPlace"))["metadata"]["uid"]
    path = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-claim"

    def replaced():
        claim = mock.claims.get((NS, "data-claim"))
        return claim if claim is not None and "dataSource" in claim["spec"] else None
    claim = await wait_until(replaced, timeout=20)
    assert ("DELETE", path) in mock.requests
    assert claim["metadata"]["annotations"]["restore.kubevirt.io/lastRestoreUID"] == f"r1-{uid}"
    assert claim["status"]["phase"] == "Pending"
    mock.bind_claim("data-claim")
    await complete(store, "r1")
    restored = await store.get(VMS, NS, "vm1")
    assert restored["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"] == {"claimName": "data-claim"}
    assert [m for m, p in mock.requests if p == path].count("DELETE") == 1  # the new claim is kept
