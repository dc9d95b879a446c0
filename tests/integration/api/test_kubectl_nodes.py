"""``kubectl cordon`` / ``uncordon`` / ``taint`` / ``label`` on our Nodes, with real kubectl against
virt-api (they send strategic merge patches, which kube-apiserver serves for built-in kinds), and
``kubectl drain``'s documented limit here: there are no pods to evict."""

from __future__ import annotations

import json

import pytest

from tests.integration.api.conftest import KUBECTL
from tests.integration.api.vm_factory import make_vm

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")


@pytest.fixture
def node(api, namespace):
    name = f"node-{namespace}"
    with api.session() as s:
        resp = s.post(api.url + "/api/v1/nodes", json={
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
        assert resp.status_code == 201, resp.text
        created = resp.json()
        created["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
        assert s.put(f"{api.url}/api/v1/nodes/{name}/status", json=created).status_code == 200
        yield name
        s.delete(f"{api.url}/api/v1/nodes/{name}")


def spec_of(kubectl, name):
    return json.loads(kubectl("get", "node", name, "-o", "json").stdout).get("spec") or {}


def test_cordon_uncordon_taint_and_label_a_node(kubectl, node):
    assert kubectl("cordon", node).stdout.strip() == f"node/{node} cordoned"
    assert spec_of(kubectl, node) == {"unschedulable": True}
    assert kubectl("get", "node", node, "--no-headers").stdout.split()[:2] == [node, "Ready,SchedulingDisabled"]
    assert kubectl("uncordon", node).stdout.strip() == f"node/{node} uncordoned"
    assert spec_of(kubectl, node) == {}

    assert kubectl("taint", "nodes", node, "kubevirt.io/drain=draining:NoSchedule").stdout.strip() == \
        f"node/{node} tainted"
    kubectl("taint", "nodes", node, "dedicated=db:NoExecute")
    taints = spec_of(kubectl, node)["taints"]
    assert sorted((t["key"], t.get("value"), t["effect"]) for t in taints) == [
        ("dedicated", "db", "NoExecute"), ("kubevirt.io/drain", "draining", "NoSchedule")]
    assert kubectl("taint", "nodes", node, "kubevirt.io/drain:NoSchedule-").stdout.strip() == f"node/{node} untainted"
    assert [t["key"] for t in spec_of(kubectl, node)["taints"]] == ["dedicated"]
    kubectl("taint", "nodes", node, "dedicated-")
    assert "taints" not in spec_of(kubectl, node)

    kubectl("label", "node", node, "zone=b")
    labels = json.loads(kubectl("get", "node", node, "-o", "json").stdout)["metadata"]["labels"]
    assert labels == {"kubernetes.io/hostname": node, "zone": "b"}


def test_strategic_merge_patch_of_node_status_merges_conditions_by_type(kubectl, node):
    patch = json.dumps({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}]}})
    kubectl("patch", "node", node, "--subresource=status", "--type=strategic", "-p", patch)
    conditions = json.loads(kubectl("get", "node", node, "-o", "json").stdout)["status"]["conditions"]
    assert [(c["type"], c["status"]) for c in conditions] == [("Ready", "True"), ("MemoryPressure", "False")]


def test_strategic_merge_patch_stays_refused_for_kubevirt_kinds(api, kubectl, namespace):
    with api.session() as s:
        vm = make_vm("nothing")
        assert s.post(f"{api.url}/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines", json=vm).ok
    proc = kubectl("patch", "vm", "nothing", "-n", namespace, "--type=strategic", "-p", "{}", check=False)
    assert proc.returncode != 0
    assert "UnsupportedMediaType" in proc.stderr or "unknown format" in proc.stderr
