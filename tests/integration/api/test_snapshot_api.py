"""snapshot.kubevirt.io and PersistentVolumeClaims through real HTTP and the real kubectl against a
virt-api process: discovery with KubeVirt's short names, OpenAPI (explain, apply validation),
CRUD and watch, printer columns, status only through /status, and KubeVirt's / kube-apiserver's
admission answers (code, reason, cause field and message), including the rules that read other
objects and the VM lock a snapshot or restore holds."""

from __future__ import annotations

import json

import pytest

from tests.integration.api.vm_factory import make_vm

SNAP = "/apis/snapshot.kubevirt.io/v1beta1"
V1 = "/apis/kubevirt.io/v1"
CORE = "/api/v1"
SUB = "/apis/subresources.kubevirt.io/v1"


@pytest.fixture
def http(api):
    with api.session() as session:
        yield lambda method, path, **kw: session.request(method, api.url + path, timeout=30, **kw)


def snapshot_body(name: str, vm: str = "vm", **spec) -> dict:
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": name},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}, **spec}}


def restore_body(name: str, snapshot: str, target: str = "vm", **spec) -> dict:
    return {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": name},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
                     "virtualMachineSnapshotName": snapshot, **spec}}


def pvc_body(name: str, size: str = "1Gi", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def collection(namespace: str, plural: str) -> str:
    base = CORE if plural == "persistentvolumeclaims" else SNAP
    return f"{base}/namespaces/{namespace}/{plural}"


def assert_invalid(resp, message: str, causes: list[tuple[str, str, str]]) -> None:
    assert resp.status_code == 422, resp.text
    status = resp.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Invalid", 422)
    assert status["message"] == message
    assert [(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]] == causes


def succeed_snapshot(http, namespace: str, name: str, **status) -> dict:
    """Write a snapshot's status through /status as virt-snapshot would (Succeeded, ready)."""
    path = f"{collection(namespace, 'virtualmachinesnapshots')}/{name}"
    snap = http("GET", path).json()
    snap["status"] = {"phase": "Succeeded", "readyToUse": True, "sourceUID": "uid-of-vm",
                      "virtualMachineSnapshotContentName": f"vmsnapshot-content-{snap['metadata']['uid']}", **status}
    resp = http("PUT", f"{path}/status", json=snap)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_kubectl_api_resources_lists_the_kinds_with_kubevirts_short_names(kubectl):
    rows = {line.split()[0]: line.split() for line in kubectl("api-resources", "--no-headers").stdout.splitlines()}
    assert rows["virtualmachinesnapshots"] == ["virtualmachinesnapshots", "vmsnapshot,vmsnapshots",
                                               "snapshot.kubevirt.io/v1beta1", "true", "VirtualMachineSnapshot"]
    assert rows["virtualmachinesnapshotcontents"] == ["virtualmachinesnapshotcontents",
                                                      "vmsnapshotcontent,vmsnapshotcontents",
                                                      "snapshot.kubevirt.io/v1beta1", "true",
                                                      "VirtualMachineSnapshotContent"]
    assert rows["virtualmachinerestores"] == ["virtualmachinerestores", "vmrestore,vmrestores",
                                              "snapshot.kubevirt.io/v1beta1", "true", "VirtualMachineRestore"]
    assert rows["persistentvolumeclaims"] == ["persistentvolumeclaims", "pvc", "v1", "true", "PersistentVolumeClaim"]


def test_kubectl_explain_reads_the_snapshot_schemas(kubectl):
    out = kubectl("explain", "vmsnapshot.spec.source").stdout
    assert "VirtualMachineSnapshot" in out and "apiGroup" in out and "kind" in out
    out = kubectl("explain", "vmrestore.spec").stdout
    assert "virtualMachineSnapshotName" in out and "targetReadinessPolicy" in out
    assert "accessModes" in kubectl("explain", "pvc.spec").stdout


def test_kubectl_apply_get_and_delete_each_kind(kubectl, namespace):
    docs = [snapshot_body("snap-a", failureDeadline="3m"), restore_body("restore-a", "snap-a", target="new-vm"),
            pvc_body("data")]
    content = {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshotContent",
               "metadata": {"name": "content-a"},
               "spec": {"virtualMachineSnapshotName": "snap-a", "source": {"virtualMachine": {
                   "metadata": {"name": "vm"}, "spec": make_vm("vm")["spec"]}}}}
    kubectl("create", "namespace", namespace, check=False)
    first = kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(docs[0]))
    assert "virtualmachinesnapshot.snapshot.kubevirt.io/snap-a created" in first.stdout
    # the restore needs a ready snapshot: refused now, accepted once the snapshot is Succeeded
    refused = kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(docs[1]), check=False)
    assert refused.returncode != 0
    assert 'VirtualMachineSnapshot \\"snap-a\\" is not ready to use' in refused.stderr or \
        'VirtualMachineSnapshot "snap-a" is not ready to use' in refused.stderr
    for doc in (content, docs[2]):
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))
    out = kubectl("get", "-n", namespace, "vmsnapshot").stdout.splitlines()
    assert out[0].split() == ["NAME", "SOURCEKIND", "SOURCENAME", "PHASE", "READYTOUSE", "CREATIONTIME", "ERROR"]
    assert out[1].split() == ["snap-a", "VirtualMachine", "vm"]  # nothing written by a controller yet
    out = kubectl("get", "-n", namespace, "vmsnapshotcontent").stdout.splitlines()
    assert out[0].split() == ["NAME", "READYTOUSE", "CREATIONTIME", "ERROR"]
    out = kubectl("get", "-n", namespace, "pvc").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                              "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert out[1].split()[:2] == ["data", "<unset>"]  # no status, no volume yet
    wide = kubectl("get", "-n", namespace, "pvc", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "VOLUMEMODE" and wide[1].split()[-1] == "Filesystem"
    for kind, name in (("vmsnapshotcontent", "content-a"), ("vmsnapshot", "snap-a")):
        assert "deleted" in kubectl("delete", "-n", namespace, kind, name, "--wait=false").stdout


def test_crud_watch_and_status_only_through_the_status_subresource(http, namespace):
    path = collection(namespace, "virtualmachinesnapshots")
    body = snapshot_body("snap-b")
    body["status"] = {"phase": "Succeeded"}
    created = http("POST", path, json=body)
    assert created.status_code == 201, created.text
    snap = created.json()
    assert "status" not in snap  # dropped on create
    assert snap["metadata"]["annotations"]["kubevirt-py.io/trace-id"]  # the create's trace, for virt-snapshot
    watch = http("GET", f"{path}?watch=1&resourceVersion=0&timeoutSeconds=1", stream=True)
    events = [json.loads(line) for line in watch.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "snap-b")]
    snap["status"] = {"phase": "Failed"}
    snap["metadata"].setdefault("labels", {})["team"] = "a"
    updated = http("PUT", f"{path}/snap-b", json=snap)
    assert updated.status_code == 200, updated.text
    assert "status" not in updated.json() and updated.json()["metadata"]["labels"] == {"team": "a"}
    written = succeed_snapshot(http, namespace, "snap-b")
    assert written["status"]["phase"] == "Succeeded" and written["status"]["readyToUse"] is True
    table = http("GET", f"{path}/snap-b", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert table["rows"][0]["cells"][:5] == ["snap-b", "VirtualMachine", "vm", "Succeeded", True]
    assert http("DELETE", f"{path}/snap-b").status_code == 200
    assert http("GET", f"{path}/snap-b").status_code == 404


def test_snapshot_admission_answers(http, namespace):
    path = collection(namespace, "virtualmachinesnapshots")
    body = snapshot_body("snap-c")
    del body["spec"]["source"]["apiGroup"]
    assert_invalid(http("POST", path, json=body),
                   'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec.source.apiGroup: '
                   "missing apiGroup", [("FieldValueNotFound", "spec.source.apiGroup", "missing apiGroup")])
    body = snapshot_body("snap-c")
    body["spec"]["source"]["kind"] = "VirtualMachineInstance"
    assert_invalid(http("POST", path, json=body),
                   'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec.source.kind: invalid kind',
                   [("FieldValueInvalid", "spec.source.kind", "invalid kind")])
    bad_deadline = 'Invalid value: "2d": time: unknown unit "d" in duration "2d"'
    assert_invalid(http("POST", path, json=snapshot_body("snap-c", failureDeadline="2d")),
                   f'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec.failureDeadline: {bad_deadline}',
                   [("FieldValueInvalid", "spec.failureDeadline", bad_deadline)])
    negative = 'Invalid value: "-5m": must be a non-negative duration'
    assert_invalid(http("POST", path, json=snapshot_body("snap-c", failureDeadline="-5m")),
                   f'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec.failureDeadline: {negative}',
                   [("FieldValueInvalid", "spec.failureDeadline", negative)])
    maybe = 'Unsupported value: "Maybe": supported values: "Delete", "Retain"'
    assert_invalid(http("POST", path, json=snapshot_body("snap-c", deletionPolicy="Maybe")),
                   f'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec.deletionPolicy: {maybe}',
                   [("FieldValueNotSupported", "spec.deletionPolicy", maybe)])
    snap = http("POST", path, json=snapshot_body("snap-c")).json()
    snap["spec"]["deletionPolicy"] = "Retain"
    assert_invalid(http("PUT", f"{path}/snap-c", json=snap),
                   'VirtualMachineSnapshot.snapshot.kubevirt.io "snap-c" is invalid: spec: spec in immutable after '
                   "creation", [("FieldValueInvalid", "spec", "spec in immutable after creation")])


def test_restore_admission_reads_the_snapshot_and_the_restores_in_progress(http, namespace):
    path = collection(namespace, "virtualmachinerestores")
    prefix = 'VirtualMachineRestore.snapshot.kubevirt.io "r1" is invalid: '
    field = "spec.virtualMachineSnapshotName"
    assert_invalid(http("POST", path, json=restore_body("r1", "ghost")),
                   prefix + f'{field}: VirtualMachineSnapshot "ghost" does not exist',
                   [("FieldValueInvalid", field, 'VirtualMachineSnapshot "ghost" does not exist')])
    http("POST", collection(namespace, "virtualmachinesnapshots"), json=snapshot_body("s1"))
    assert_invalid(http("POST", path, json=restore_body("r1", "s1")),
                   prefix + f'{field}: VirtualMachineSnapshot "s1" is not ready to use',
                   [("FieldValueInvalid", field, 'VirtualMachineSnapshot "s1" is not ready to use')])
    succeed_snapshot(http, namespace, "s1")
    bad_patch = '{"op": "replace", "path": "/metadata/name", "value": "x"}'
    assert_invalid(http("POST", path, json=restore_body("r1", "s1", patches=[bad_patch])),
                   prefix + 'spec.patches: patching is valid only for elements under /spec/ only: "path": '
                            '"/metadata/name"',
                   [("FieldValueInvalid", "spec.patches",
                     'patching is valid only for elements under /spec/ only:  "path": "/metadata/name"')])
    assert_invalid(http("POST", path, json=restore_body("r1", "s1", targetReadinessPolicy="Whenever")),
                   prefix + 'spec.targetReadinessPolicy: target readiness policy "Whenever" doesn\'t exist',
                   [("FieldValueInvalid", "spec.targetReadinessPolicy",
                     'target readiness policy "Whenever" doesn\'t exist')])
    first = http("POST", path, json=restore_body("r1", "s1"))
    assert first.status_code == 201, first.text
    second = http("POST", path, json=restore_body("r2", "s1"))
    assert_invalid(second, 'VirtualMachineRestore.snapshot.kubevirt.io "r2" is invalid: spec.target: '
                           'VirtualMachineRestore "r1" in progress',
                   [("FieldValueInvalid", "spec.target", 'VirtualMachineRestore "r1" in progress')])
    other_target = http("POST", path, json=restore_body("r3", "s1", target="copy"))
    assert other_target.status_code == 201, other_target.text
    restore = first.json()
    restore["status"] = {"complete": True}
    assert http("PUT", f"{path}/r1/status", json=restore).status_code == 200
    assert http("POST", path, json=restore_body("r2", "s1")).status_code == 201  # r1 is complete now
    r2 = http("GET", f"{path}/r2").json()
    r2["spec"]["targetReadinessPolicy"] = "StopTarget"
    assert_invalid(http("PUT", f"{path}/r2", json=r2),
                   'VirtualMachineRestore.snapshot.kubevirt.io "r2" is invalid: spec: spec in immutable after '
                   "creation", [("FieldValueInvalid", "spec", "spec in immutable after creation")])


def test_pvc_admission_as_kube_apiserver(http, namespace):
    path = collection(namespace, "persistentvolumeclaims")
    bad = pvc_body("d1")
    del bad["spec"]["accessModes"]
    bad["spec"]["resources"] = {}
    assert_invalid(http("POST", path, json=bad),
                   'PersistentVolumeClaim "d1" is invalid: [spec.accessModes: Required value: at least 1 access '
                   "mode is required, spec.resources[storage]: Required value]",
                   [("FieldValueRequired", "spec.accessModes", "Required value: at least 1 access mode is required"),
                    ("FieldValueRequired", "spec.resources[storage]", "Required value")])
    created = http("POST", path, json=pvc_body("d1"))
    assert created.status_code == 201, created.text
    claim = created.json()
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert claim["spec"]["volumeMode"] == "Filesystem"
    claim["spec"]["resources"]["requests"]["storage"] = "2Gi"
    immutable = ("FieldValueForbidden", "spec", "Forbidden: spec is immutable after creation except "
                 "resources.requests and volumeAttributesClassName for bound claims")
    assert_invalid(http("PUT", f"{path}/d1", json=claim),
                   f'PersistentVolumeClaim "d1" is invalid: spec: {immutable[2]}', [immutable])
    claim = http("GET", f"{path}/d1").json()
    claim["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    assert http("PUT", f"{path}/d1/status", json=claim).status_code == 200
    grown = http("PATCH", f"{path}/d1", data=json.dumps({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
                 headers={"Content-Type": "application/merge-patch+json"})
    assert grown.status_code == 200, grown.text
    assert grown.json()["spec"]["resources"]["requests"]["storage"] == "2Gi"
    shrunk = http("PATCH", f"{path}/d1", data=json.dumps({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
                  headers={"Content-Type": "application/merge-patch+json"})
    assert_invalid(shrunk, 'PersistentVolumeClaim "d1" is invalid: spec.resources.requests.storage: Forbidden: '
                           "field can not be less than previous value",
                   [("FieldValueForbidden", "spec.resources.requests.storage",
                     "Forbidden: field can not be less than previous value")])


def lock_vm(http, namespace: str, name: str, **status) -> dict:
    path = f"{V1}/namespaces/{namespace}/virtualmachines"
    vm = http("POST", path, json=make_vm(name, run_strategy="Halted")).json()
    vm["status"] = {**(vm.get("status") or {}), **status}
    resp = http("PUT", f"{path}/{name}/status", json=vm)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_vm_held_by_a_snapshot_refuses_volume_and_run_state_changes(http, namespace):
    path = f"{V1}/namespaces/{namespace}/virtualmachines"
    vm = lock_vm(http, namespace, "held", snapshotInProgress="snap-x")
    prefix = 'VirtualMachine.kubevirt.io "held" is invalid: spec: '
    changed = json.loads(json.dumps(vm))
    changed["spec"]["template"]["spec"]["volumes"][0]["containerDisk"]["image"] = "quay.io/other"
    message = 'Cannot update vm disks or volumes until snapshot "snap-x" completes'
    assert_invalid(http("PUT", f"{path}/held", json=changed), prefix + message,
                   [("FieldValueNotSupported", "spec", message)])
    changed = json.loads(json.dumps(vm))
    changed["spec"]["runStrategy"] = "Always"
    message = 'Cannot update vm running state until snapshot "snap-x" completes'
    assert_invalid(http("PUT", f"{path}/held", json=changed), prefix + message,
                   [("FieldValueNotSupported", "spec", message)])
    resp = http("PUT", f"{SUB}/namespaces/{namespace}/virtualmachines/held/start", json={})
    assert resp.status_code == 500
    assert resp.json()["message"] == ('Internal error occurred: admission webhook "virtualmachine-validator.kubevirt.io" '
                                      f"denied the request: {message}")
    resp = http("PUT", f"{SUB}/namespaces/{namespace}/virtualmachineinstances/held/unpause", json={})
    assert resp.status_code == 409
    assert resp.json()["message"] == ('Operation cannot be fulfilled on virtualmachine.kubevirt.io "held": '
                                      "VM snapshot is in progress")
    changed = json.loads(json.dumps(vm))
    changed["metadata"].setdefault("labels", {})["note"] = "fine"
    assert http("PUT", f"{path}/held", json=changed).status_code == 200  # other changes pass


def test_a_vm_held_by_a_restore_refuses_run_strategy_changes(http, namespace):
    path = f"{V1}/namespaces/{namespace}/virtualmachines"
    vm = lock_vm(http, namespace, "target", restoreInProgress="restore-x")
    vm["spec"]["runStrategy"] = "Manual"
    message = 'Cannot update VM runStrategy until restore "restore-x" completes'
    assert_invalid(http("PUT", f"{path}/target", json=vm),
                   f'VirtualMachine.kubevirt.io "target" is invalid: spec: {message}',
                   [("FieldValueNotSupported", "spec", message)])
