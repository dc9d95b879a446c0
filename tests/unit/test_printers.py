"""kubectl get shows KubeVirt's columns: Tables with the CRDs' printer columns."""

from datetime import datetime, timezone

import pytest

from services.virt_api.printers import evaluate_path, format_age, to_table
from shared.api.resources import (
    LEASE,
    MIGRATION_POLICY,
    NODE,
    PERSISTENT_VOLUME_CLAIM,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_INSTANCE,
    VIRTUAL_MACHINE_INSTANCE_MIGRATION,
    VIRTUAL_MACHINE_INSTANCE_REPLICA_SET,
    VIRTUAL_MACHINE_POOL,
    VIRTUAL_MACHINE_RESTORE,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_CONTENT,
)
from shared.errors import BadRequest

NOW = datetime(2026, 12, 2, 8, 0, 0, tzinfo=timezone.utc)
CREATED = "2026-12-02T07:55:00Z"  # five minutes before NOW


def obj(name="x", **parts):
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": CREATED, "uid": "u1"}, **parts}


def headers(table):
    return [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]


def test_vm_columns_and_cells():
    vm = obj("vm-cirros", status={"printableStatus": "Running",
                                  "conditions": [{"type": "Paused", "status": "False"},
                                                 {"type": "Ready", "status": "True"}]})
    table = to_table(VIRTUAL_MACHINE, [vm, obj("new")], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("Age", "date", 0), ("Status", "string", 0),
                              ("Ready", "string", 0)]
    assert [r["cells"] for r in table["rows"]] == [["vm-cirros", "5m", "Running", "True"], ["new", "5m", None, None]]
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")


def test_vmi_columns_include_wide_ones():
    vmi = obj("vmi-1", status={"phase": "Running", "nodeName": "node-1",
                               "interfaces": [{"name": "default", "ipAddress": "10.0.2.2"}],
                               "conditions": [{"type": "Ready", "status": "True"},
                                              {"type": "LiveMigratable", "status": "False"}]})
    table = to_table(VIRTUAL_MACHINE_INSTANCE, [vmi], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("Age", "date", 0), ("Phase", "string", 0),
                              ("IP", "string", 0), ("NodeName", "string", 0), ("Ready", "string", 0),
                              ("Live-Migratable", "string", 1), ("Paused", "string", 1)]
    assert table["rows"][0]["cells"] == ["vmi-1", "5m", "Running", "10.0.2.2", "node-1", "True", "False", None]


@pytest.mark.parametrize("resource", [VIRTUAL_MACHINE_INSTANCE_REPLICA_SET, VIRTUAL_MACHINE_POOL],
                         ids=["vmirs", "pool"])
def test_replica_columns(resource):
    table = to_table(resource, [obj("rs", spec={"replicas": 3}, status={"replicas": 2, "readyReplicas": 1})], now=NOW)
    assert [h[0] for h in headers(table)] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert table["rows"][0]["cells"] == ["rs", 3, 2, 1, "5m"]


def test_migration_columns():
    table = to_table(VIRTUAL_MACHINE_INSTANCE_MIGRATION, [obj("m", spec={"vmiName": "vmi-1"},
                                                              status={"phase": "Scheduling"})], now=NOW)
    assert [h[0] for h in headers(table)] == ["Name", "Phase", "VMI"]
    assert table["rows"][0]["cells"] == ["m", "Scheduling", "vmi-1"]


def test_node_lease_and_policy_columns():
    node = obj("node-1", spec={"unschedulable": True},
               status={"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v0.1"}})
    node["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}
    node["status"]["addresses"] = [{"type": "InternalIP", "address": "10.64.0.2"},
                                   {"type": "Hostname", "address": "node-1"}]
    node["status"]["nodeInfo"].update({"osImage": "Linux-6.1", "kernelVersion": "6.1.0"})
    table = to_table(NODE, [node, obj("node-2")], now=NOW)
    # kube-apiserver's Node columns; the wide ones (priority 1) are what 'kubectl get nodes -o wide' adds
    assert headers(table) == [("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0),
                              ("Age", "date", 0), ("Version", "string", 0), ("Internal-IP", "string", 1),
                              ("External-IP", "string", 1), ("OS-Image", "string", 1),
                              ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)]
    assert table["rows"][0]["cells"] == ["node-1", "Ready,SchedulingDisabled", "control-plane,worker", "5m", "v0.1",
                                         "10.64.0.2", "<none>", "Linux-6.1", "6.1.0", "<unknown>"]
    assert table["rows"][1]["cells"] == ["node-2", "Unknown", "<none>", "5m", None,
                                         "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]
    lease = to_table(LEASE, [obj("l", spec={"holderIdentity": "virt-controller-1"})], now=NOW)
    assert lease["rows"][0]["cells"] == ["l", "virt-controller-1", "5m"]
    assert to_table(MIGRATION_POLICY, [obj("p")], now=NOW)["rows"][0]["cells"] == ["p", "5m"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("Metadata", {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}, id="metadata"),
        pytest.param("Object", {"spec": {"runStrategy": "Halted"}}, id="object"),
        pytest.param("None", None, id="none"),
    ],
)
def test_include_object_modes(mode, expected):
    vm = obj("vm", spec={"runStrategy": "Halted"})
    row = to_table(VIRTUAL_MACHINE, [vm], include_object=mode, now=NOW)["rows"][0]
    if expected is None:
        assert "object" not in row
    else:
        for key, value in expected.items():
            assert row["object"][key] == value
        assert row["object"]["metadata"] == vm["metadata"]


def test_bad_include_object_is_bad_request():
    with pytest.raises(BadRequest):
        to_table(VIRTUAL_MACHINE, [], include_object="Everything")


def test_empty_list_and_resource_version():
    table = to_table(VIRTUAL_MACHINE, [], resource_version="42")
    assert table["rows"] == [] and table["metadata"] == {"resourceVersion": "42"}


def test_missing_creation_time_is_unknown_age():
    vm = {"metadata": {"name": "v"}}
    assert to_table(VIRTUAL_MACHINE, [vm], now=NOW)["rows"][0]["cells"][1] == "<unknown>"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(-5, "<invalid>", id="future"),
        pytest.param(-0.5, "0s", id="clock-skew"),
        pytest.param(59, "59s", id="seconds"),
        pytest.param(119, "119s", id="under-two-minutes"),
        pytest.param(330, "5m30s", id="minutes-seconds"),
        pytest.param(600, "10m", id="ten-minutes"),
        pytest.param(3 * 3600 + 120, "3h2m", id="hours-minutes"),
        pytest.param(10 * 3600, "10h", id="hours"),
        pytest.param(2 * 86400 + 4 * 3600, "2d4h", id="days-hours"),
        pytest.param(30 * 86400, "30d", id="days"),
        pytest.param(2 * 365 * 86400 + 20 * 86400, "2y20d", id="years-days"),
        pytest.param(9 * 365 * 86400, "9y", id="years"),
    ],
)
def test_age_matches_kubernetes_human_duration(seconds, text):
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(".status.phase", "Running", id="field"),
        pytest.param(".status.interfaces[0].ipAddress", "10.0.0.1", id="index"),
        pytest.param(".status.interfaces[3].ipAddress", None, id="index-missing"),
        pytest.param(".status.conditions[?(@.type=='Ready')].status", "True", id="filter"),
        pytest.param(".status.conditions[?(@.type==\"Paused\")].status", None, id="filter-missing"),
        pytest.param(".spec.nothing.deeper", None, id="missing"),
    ],
)
def test_evaluate_path(path, value):
    data = {"status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert evaluate_path(data, path) == value


def test_unsupported_path_raises():
    with pytest.raises(ValueError):
        evaluate_path({}, "status.phase")


def test_snapshot_columns_as_kubevirts_crd():
    done = obj("snap", spec={"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}},
               status={"phase": "Succeeded", "readyToUse": True, "creationTime": "2026-12-02T07:58:00Z"})
    failed = obj("bad", spec={"source": {"kind": "VirtualMachine", "name": "vm"}},
                 status={"phase": "Failed", "readyToUse": False, "error": {"message": "snapshot deadline exceeded"}})
    table = to_table(VIRTUAL_MACHINE_SNAPSHOT, [done, failed], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("SourceKind", "string", 0), ("SourceName", "string", 0),
                              ("Phase", "string", 0), ("ReadyToUse", "boolean", 0), ("CreationTime", "date", 0),
                              ("Error", "string", 0)]
    assert [r["cells"] for r in table["rows"]] == [
        ["snap", "VirtualMachine", "vm", "Succeeded", True, "2m", None],
        ["bad", "VirtualMachine", "vm", "Failed", False, None, "snapshot deadline exceeded"],
    ]


def test_content_and_restore_columns_as_kubevirts_crds():
    content = obj("content", status={"readyToUse": True, "creationTime": "2026-12-02T07:00:00Z"})
    table = to_table(VIRTUAL_MACHINE_SNAPSHOT_CONTENT, [content], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("ReadyToUse", "boolean", 0), ("CreationTime", "date", 0),
                              ("Error", "string", 0)]
    assert table["rows"][0]["cells"] == ["content", True, "60m", None]
    restore = obj("r", spec={"target": {"kind": "VirtualMachine", "name": "vm"}},
                  status={"complete": True, "restoreTime": "2026-12-02T07:59:30Z"})
    table = to_table(VIRTUAL_MACHINE_RESTORE, [restore, obj("new", spec={"target": {"kind": "VirtualMachine",
                                                                                    "name": "vm2"}})], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("TargetKind", "string", 0), ("TargetName", "string", 0),
                              ("Complete", "boolean", 0), ("RestoreTime", "date", 0)]
    assert [r["cells"] for r in table["rows"]] == [["r", "VirtualMachine", "vm", True, "30s"],
                                                   ["new", "VirtualMachine", "vm2", None, None]]


def test_pvc_columns_as_kubectl_prints_them():
    bound = obj("data", spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                              "volumeName": "pvc-u1", "storageClassName": "local", "volumeMode": "Filesystem"},
                status={"phase": "Bound", "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteMany", "ReadWriteOnce"]})
    pending = obj("new", spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
                  status={"phase": "Pending"})
    going = obj("old", spec={"volumeName": "pvc-u2", "volumeAttributesClassName": "gold"},
                status={"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadOnlyMany"]})
    going["metadata"]["deletionTimestamp"] = CREATED
    going["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "legacy"}
    table = to_table(PERSISTENT_VOLUME_CLAIM, [bound, pending, going], now=NOW)
    assert headers(table) == [("Name", "string", 0), ("Status", "string", 0), ("Volume", "string", 0),
                              ("Capacity", "string", 0), ("Access Modes", "string", 0), ("StorageClass", "string", 0),
                              ("VolumeAttributesClass", "string", 0), ("Age", "string", 0),
                              ("VolumeMode", "string", 1)]
    assert [r["cells"] for r in table["rows"]] == [
        ["data", "Bound", "pvc-u1", "1Gi", "RWO,RWX", "local", "<unset>", "5m", "Filesystem"],
        ["new", "Pending", "", "", "", "", "<unset>", "5m", "<unset>"],
        ["old", "Terminating", "pvc-u2", "5Gi", "ROX", "legacy", "gold", "5m", "<unset>"],
    ]
