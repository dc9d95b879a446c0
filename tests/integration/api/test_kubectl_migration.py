"""Live migration with the real kubectl: ``kubectl get vmim`` with KubeVirt's columns (Phase, VMI),
a refused VMIM as kubectl shows it, ``kubectl delete vmim`` held by the finalizer, and the KubeVirt
object's columns (Age, Phase) and a ``kubectl patch`` of its migration settings."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.api.conftest import KUBECTL
from tests.integration.api.test_migration_api import put_vmi

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")


@pytest.fixture
def http(api):
    with api.session() as session:
        yield lambda method, path, **kw: session.request(method, api.url + path, timeout=30, **kw)


def vmim_yaml(name: str, vmi: str) -> str:
    return yaml.safe_dump({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                           "metadata": {"name": name}, "spec": {"vmiName": vmi}})


def test_get_vmim_columns_refusal_and_delete(kubectl, http, namespace):
    put_vmi(http, namespace, "guest", "Running")
    assert kubectl("create", "-n", namespace, "-f", "-", stdin=vmim_yaml("mig1", "guest")).stdout.strip() == \
        "virtualmachineinstancemigration.kubevirt.io/mig1 created"
    table = kubectl("get", "vmim", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "VMI"]
    assert table[1].split() == ["mig1", "guest"]  # no phase until virt-migration writes one

    refused = kubectl("create", "-n", namespace, "-f", "-", stdin=vmim_yaml("mig2", "guest"), check=False)
    assert refused.returncode == 1
    uid = json.loads(kubectl("get", "vmim", "mig1", "-n", namespace, "-o", "json").stdout)["metadata"]["uid"]
    assert refused.stderr.strip() == (
        'Error from server: error when creating "STDIN": admission webhook "migration-create-validator.kubevirt.io" '
        f"denied the request: in-flight migration detected. Active migration job ({uid}) is currently already in "
        "progress for VMI guest.")

    kubectl("delete", "vmim", "mig1", "-n", namespace, "--wait=false")
    held = json.loads(kubectl("get", "vmim", "mig1", "-n", namespace, "-o", "json").stdout)
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [
        "kubevirt.io/migrationJobFinalize"]


def test_kubevirt_object_columns_and_patch(kubectl, http, namespace):
    existing = json.loads(kubectl("get", "kubevirt", "-A", "-o", "json").stdout)["items"]
    if existing:
        pytest.skip("a KubeVirt object exists already in this installation (only one may)")
    doc = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt"},
           "spec": {"configuration": {"migrations": {"parallelMigrationsPerCluster": 5}}}}
    kubectl("create", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
    try:
        path = f"/apis/kubevirt.io/v1/namespaces/{namespace}/kubevirts/kubevirt"
        stored = http("GET", path).json()
        stored["status"] = {"phase": "Deployed"}
        assert http("PUT", f"{path}/status", json=stored).status_code == 200
        table = kubectl("get", "kv", "-n", namespace).stdout.splitlines()
        assert table[0].split() == ["NAME", "AGE", "PHASE"]
        assert table[1].split()[0] == "kubevirt" and table[1].split()[2] == "Deployed"
        kubectl("patch", "kubevirt", "kubevirt", "-n", namespace, "--type=merge", "-p",
                '{"spec":{"configuration":{"migrations":{"bandwidthPerMigration":"32Mi","allowPostCopy":true}}}}')
        got = json.loads(kubectl("get", "kubevirt", "kubevirt", "-n", namespace, "-o", "json").stdout)
        assert got["spec"]["configuration"]["migrations"] == {
            "parallelMigrationsPerCluster": 5, "bandwidthPerMigration": "32Mi", "allowPostCopy": True}
        bad = kubectl("patch", "kubevirt", "kubevirt", "-n", namespace, "--type=merge", "-p",
                      '{"spec":{"configuration":{"migrations":{"maxDowntimeMs":0}}}}', check=False)
        assert bad.returncode == 1
        assert "spec.configuration.migrations.maxDowntimeMs in body should be greater than or equal to 1" in bad.stderr
    finally:
        kubectl("delete", "kubevirt", "kubevirt", "-n", namespace)
