"""The CSI VolumeSnapshotter's restored-claim operations (create, read, delete a
PersistentVolumeClaim in the cluster) on the real ``kubernetes`` client against the mock
Kubernetes API (tests/mock_kubernetes_api.py; no API server can run here)."""

from __future__ import annotations

import pytest

from mock_kubernetes_api import NS, serve_mock
from services.virt_snapshot.csi_snapshotter import CsiSnapshotter, cluster_claim_body
from shared.kube_client import api_client_from
from services.virt_snapshot.volume_snapshotter import ClaimState, SnapshotterError

CLAIMS = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"


@pytest.fixture
async def kube(tmp_path):
    async with serve_mock(tmp_path) as (mock, kubeconfig):
        snapshotter = CsiSnapshotter(api_client_from(kubeconfig), request_timeout=5.0, claim_poll_interval=0.2)
        try:
            yield mock, snapshotter
        finally:
            snapshotter.close()


def restored_claim(name: str = "restore-r-data") -> dict:
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "vmsnapshot-u1-volume-data"}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"restore.kubevirt.io/source-vm-name": "vm1"},
                         "annotations": {"restore.kubevirt.io/name": "r1",
                                         "restore.kubevirt.io/lastRestoreUID": "r1-uid"},
                         "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                              "name": "vm1", "uid": "vm-uid", "controller": True}]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "csi-hostpath", "dataSource": source, "dataSourceRef": source}}


def test_cluster_claim_body_drops_owner_references_only():
    body = restored_claim()
    out = cluster_claim_body(body)
    assert "ownerReferences" not in out["metadata"]
    assert {k: v for k, v in out["metadata"].items()} == {k: v for k, v in body["metadata"].items()
                                                          if k != "ownerReferences"}
    assert out["spec"] == body["spec"] and out["kind"] == "PersistentVolumeClaim" and out["apiVersion"] == "v1"
    assert body["metadata"]["ownerReferences"]  # the caller's body is not changed


async def test_create_read_bind_and_delete_a_claim(kube):
    mock, snapshotter = kube
    assert snapshotter.claim_poll_interval == 0.2
    assert await snapshotter.read_claim(NS, "restore-r-data") is None
    await snapshotter.create_claim(restored_claim())
    made = mock.claims[(NS, "restore-r-data")]
    assert made["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                          "name": "vmsnapshot-u1-volume-data"}
    assert made["spec"]["dataSourceRef"] == made["spec"]["dataSource"]
    assert made["spec"]["storageClassName"] == "csi-hostpath"
    assert "ownerReferences" not in made["metadata"]
    assert made["metadata"]["labels"] == {"restore.kubevirt.io/source-vm-name": "vm1"}
    state = await snapshotter.read_claim(NS, "restore-r-data")
    assert state == ClaimState(phase="Pending", annotations={"restore.kubevirt.io/name": "r1",
                                                             "restore.kubevirt.io/lastRestoreUID": "r1-uid"})
    mock.bind_claim("restore-r-data")
    assert (await snapshotter.read_claim(NS, "restore-r-data")).phase == "Bound"
    # created again (a new leader): 409 AlreadyExists is fine and nothing changes
    await snapshotter.create_claim(restored_claim())
    assert [m for m, p in mock.requests if p == CLAIMS] == ["POST", "POST"]
    assert mock.claims[(NS, "restore-r-data")]["status"]["phase"] == "Bound"
    await snapshotter.delete_claim(NS, "restore-r-data")
    assert (NS, "restore-r-data") not in mock.claims
    await snapshotter.delete_claim(NS, "restore-r-data")  # 404: already gone
    assert [m for m, p in mock.requests if p == f"{CLAIMS}/restore-r-data"].count("DELETE") == 2


async def test_a_claim_without_status_reads_as_no_phase(kube):
    mock, snapshotter = kube
    mock.add_claim("bare", "csi-hostpath")
    del mock.claims[(NS, "bare")]["status"]
    assert await snapshotter.read_claim(NS, "bare") == ClaimState(phase=None, annotations={})


@pytest.mark.parametrize(("method", "path", "code", "retryable"), [
    ("POST", CLAIMS, 503, True),
    ("POST", CLAIMS, 429, True),
    ("POST", CLAIMS, 403, False),
    ("GET", f"{CLAIMS}/restore-r-data", 500, True),
    ("GET", f"{CLAIMS}/restore-r-data", 401, False),
    ("DELETE", f"{CLAIMS}/restore-r-data", 502, True),
    ("DELETE", f"{CLAIMS}/restore-r-data", 422, False),
])
async def test_api_errors_are_snapshotter_errors(kube, method, path, code, retryable):
    mock, snapshotter = kube
    mock.fail[(method, path)] = code
    operation = {"POST": lambda: snapshotter.create_claim(restored_claim()),
                 "GET": lambda: snapshotter.read_claim(NS, "restore-r-data"),
                 "DELETE": lambda: snapshotter.delete_claim(NS, "restore-r-data")}[method]
    with pytest.raises(SnapshotterError) as err:
        await operation()
    verb = {"POST": "create", "GET": "get", "DELETE": "delete"}[method]
    assert err.value.message == (f"{verb} PersistentVolumeClaim {NS}/restore-r-data: injected failure {code} "
                                 f"(HTTP {code})")
    assert err.value.retryable is retryable
    assert mock.claims == {}


async def test_unreachable_api_is_a_retryable_claim_error(tmp_path):
    async with serve_mock(tmp_path) as (_, kubeconfig):
        api_client = api_client_from(kubeconfig)
    api_client.configuration.retries = False  # the server is closed now
    snapshotter = CsiSnapshotter(api_client, request_timeout=2.0)
    try:
        with pytest.raises(SnapshotterError) as err:
            await snapshotter.read_claim(NS, "x")
        assert err.value.retryable and "Kubernetes API unreachable" in err.value.message
    finally:
        snapshotter.close()
