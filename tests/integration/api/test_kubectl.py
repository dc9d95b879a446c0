"""Real ``kubectl`` against virt-api with the kubeconfig ``virtctl up`` writes: apply every
KubeVirt example, get with KubeVirt's columns, -o yaml with defaults, patch, cascading delete,
explain. Reads ../shared/conformance/kubevirt-examples/ in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.api.conftest import CONFORMANCE, KUBECTL
from tests.integration.api.vm_factory import GROUP, VERSION, make_vmi

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")

EXAMPLES = CONFORMANCE / "kubevirt-examples"
#: Applied after everything else: it names a VMI that must exist first.
LAST = ("migration-job.yaml",)


def example_files() -> list[Path]:
    files = sorted(EXAMPLES.glob("*.yaml"))
    return [f for f in files if f.name not in LAST] + [f for f in files if f.name in LAST]


def test_kubectl_version_talks_to_the_server(kubectl):
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["major"] == "1"


def test_every_kubevirt_example_applies_and_lists_with_kubevirt_columns(kubectl, namespace):
    applied = []
    for path in example_files():
        out = kubectl("apply", "-n", namespace, "-f", str(path)).stdout
        applied.append(out.strip())
        assert " created" in out or " configured" in out or " unchanged" in out, out
    assert len(applied) == len(example_files()) >= 15

    docs = [yaml.safe_load(p.read_text()) for p in example_files()]
    listed = json.loads(kubectl("get", "vm,vmi,vmim,vmirs,vmpool", "-n", namespace, "-o", "json").stdout)
    names = {(i["kind"], i["metadata"]["name"]) for i in listed["items"]}
    expected = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "MigrationPolicy"}
    assert names == expected

    table = kubectl("get", "vm,vmi,vmim", "-n", namespace).stdout
    headers = [line.split() for line in table.splitlines() if line.startswith("NAME")]
    assert ["NAME", "AGE", "STATUS", "READY"] in headers
    assert ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"] in headers
    assert any(h[:3] == ["NAME", "PHASE", "VMI"] for h in headers)
    assert "virtualmachine.kubevirt.io/vm-cirros" in table
    assert "virtualmachineinstancemigration.kubevirt.io/migration-job" in table

    policy = json.loads(kubectl("get", "migrationpolicies", "example-migration-policy", "-o", "json").stdout)
    assert policy["spec"]["bandwidthPerMigration"] == "2000Mi"


def test_get_yaml_shows_defaults_and_merge_patch_changes_run_strategy(kubectl, namespace):
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "vm-cirros.yaml"))
    vm = yaml.safe_load(kubectl("get", "vm", "vm-cirros", "-n", namespace, "-o", "yaml").stdout)
    template = vm["spec"]["template"]["spec"]
    assert template["domain"]["machine"]["type"] == "q35"
    assert vm["metadata"]["generation"] == 1 and vm["metadata"]["uid"]

    out = kubectl("patch", "vm", "vm-cirros", "-n", namespace, "--type", "merge",
                  "-p", '{"spec":{"runStrategy":"Always"}}').stdout
    assert "virtualmachine.kubevirt.io/vm-cirros patched" in out
    vm = json.loads(kubectl("get", "vm", "vm-cirros", "-n", namespace, "-o", "json").stdout)
    assert vm["spec"]["runStrategy"] == "Always"
    assert vm["metadata"]["generation"] == 2


def test_apply_again_with_a_change_is_a_merge_patch_the_server_accepts(kubectl, namespace, tmp_path):
    doc = yaml.safe_load((EXAMPLES / "vm-cirros.yaml").read_text())
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
    doc["metadata"]["labels"]["extra"] = "yes"
    out = kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc)).stdout
    assert "configured" in out
    again = kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc)).stdout
    assert "unchanged" in again
    labels = json.loads(kubectl("get", "vm", "vm-cirros", "-n", namespace, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["extra"] == "yes"


def test_kubectl_delete_vm_removes_the_vm_and_its_vmi(kubectl, namespace, api):
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "vm-cirros.yaml"))
    vm = json.loads(kubectl("get", "vm", "vm-cirros", "-n", namespace, "-o", "json").stdout)
    # No controller runs in this test: create the VMI the VM controller would, owned by the VM.
    vmi = make_vmi("vm-cirros", owner=vm)
    resp = api.session().post(f"{api.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/virtualmachineinstances",
                              json=vmi)
    assert resp.status_code == 201, resp.text
    assert "vm-cirros" in kubectl("get", "vmi", "-n", namespace).stdout

    out = kubectl("delete", "vm", "vm-cirros", "-n", namespace, "--timeout=30s").stdout
    assert 'virtualmachine.kubevirt.io "vm-cirros" deleted' in out
    assert kubectl("get", "vm", "vm-cirros", "-n", namespace, check=False).returncode != 0
    remaining = json.loads(kubectl("get", "vmi", "-n", namespace, "-o", "json").stdout)["items"]
    # A VMI carries KubeVirt's foreground-delete finalizer until virt-controller releases it.
    assert all(i["metadata"].get("deletionTimestamp") for i in remaining)
    if remaining:
        kubectl("patch", "vmi", "vm-cirros", "-n", namespace, "--type", "merge", "-p",
                '{"metadata":{"finalizers":null}}')
    assert json.loads(kubectl("get", "vmi", "-n", namespace, "-o", "json").stdout)["items"] == []


def test_kubectl_explain_answers_from_the_served_openapi(kubectl):
    out = kubectl("explain", "vm.spec.runStrategy").stdout
    assert "runStrategy" in out
    assert "KIND:" in out and "VirtualMachine" in out


def test_kubectl_reports_server_errors_as_kubernetes_errors(kubectl, namespace):
    proc = kubectl("get", "vm", "does-not-exist", "-n", namespace, check=False)
    assert proc.returncode == 1
    assert 'virtualmachines.kubevirt.io "does-not-exist" not found' in proc.stderr


def test_label_annotate_replace_work_and_server_side_apply_is_refused_clearly(kubectl, namespace):
    manifest = str(EXAMPLES / "vm-cirros.yaml")
    kubectl("apply", "-n", namespace, "-f", manifest)
    assert "labeled" in kubectl("label", "vm", "vm-cirros", "-n", namespace, "team=blue").stdout
    assert "annotated" in kubectl("annotate", "vm", "vm-cirros", "-n", namespace, "note=hi").stdout
    selected = kubectl("get", "vm", "-n", namespace, "-l", "team=blue", "-o", "name").stdout.split()
    assert selected == ["virtualmachine.kubevirt.io/vm-cirros"]
    assert "replaced" in kubectl("replace", "-n", namespace, "-f", manifest).stdout
    vm = json.loads(kubectl("get", "vm", "vm-cirros", "-n", namespace, "-o", "json").stdout)
    assert "team" not in vm["metadata"]["labels"]  # replace puts back exactly the manifest
    proc = kubectl("apply", "--server-side", "-n", namespace, "-f", manifest, check=False)
    assert proc.returncode == 1 and "application/apply-patch+yaml" in proc.stderr
