"""VMIM admission as KubeVirt's (migration-create-admitter.go, migration-update-admitter.go, the
VMIM create mutator) and the KubeVirt object's migration configuration ranges: exact codes,
fields and messages."""

import copy

import pytest

from shared.admission import admit
from shared.admission.cluster import ClusterConfig
from shared.admission.kubevirt_rules import compute_migration_configuration_causes
from shared.admission.migration_create import (
    admission_denied,
    compute_create_refusal,
    compute_kubevirt_create_refusal,
)
from shared.api.resources import KUBEVIRT, VIRTUAL_MACHINE_INSTANCE_MIGRATION
from shared.errors import Invalid

VMIM = VIRTUAL_MACHINE_INSTANCE_MIGRATION


def vmim(**spec):
    return {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"vmiName": "guest", **spec}}


def stored(name, phase, uid):
    return {"metadata": {"name": name, "uid": uid, "labels": {"kubevirt.io/vmi-name": "guest"}},
            "spec": {"vmiName": "guest"}, "status": {"phase": phase} if phase is not None else {}}


def vmi(phase="Running", conditions=()):
    return {"metadata": {"name": "guest", "namespace": "ns"}, "status": {"phase": phase,
                                                                        "conditions": list(conditions)}}


# ---- mutator --------------------------------------------------------------------------------

def test_create_gets_the_vmi_name_label_over_a_clients_value_and_the_finalizer_once():
    body = vmim()
    body["metadata"]["labels"] = {"kubevirt.io/vmi-name": "other", "team": "a"}
    body["metadata"]["finalizers"] = ["example.com/keep"]
    obj = admit(VMIM, body, operation="CREATE").obj
    assert obj["metadata"]["labels"] == {"kubevirt.io/vmi-name": "guest", "team": "a"}
    assert obj["metadata"]["finalizers"] == ["example.com/keep", "kubevirt.io/migrationJobFinalize"]
    again = admit(VMIM, obj, operation="CREATE").obj
    assert again["metadata"]["finalizers"] == ["example.com/keep", "kubevirt.io/migrationJobFinalize"]


# ---- object-only create rules ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "cluster", "trusted", "causes"),
    [
        pytest.param({"vmiName": ""}, ClusterConfig(), False,
                     [("spec.vmiName", "FieldValueRequired", "vmiName is missing")], id="vmiName-missing"),
        pytest.param({"priority": "user-triggered"}, ClusterConfig(), False,
                     [("spec.migrationPriority", "FieldValueForbidden",
                       "Migration priority queue, only virt-controller is allowed to set priority field")],
                     id="priority-from-a-user"),
        pytest.param({"priority": "system-critical"}, ClusterConfig(), True, [], id="priority-from-kubevirt"),
        pytest.param({"sendTo": {"migrationID": "a", "connectURL": "x"}}, ClusterConfig(), False,
                     [("", "FieldValueNotSupported",
                       "DecentralizedLiveMigration feature gate is not enabled in kubevirt resource")],
                     id="decentralized-without-gate"),
        pytest.param({"sendTo": {"migrationID": "a", "connectURL": "x"}, "receive": {"migrationID": "b"}},
                     ClusterConfig(feature_gates=frozenset({"DecentralizedLiveMigration"})), False,
                     [("", "FieldValueInvalid", "sendTo migrationID a does not match receive migrationID b")],
                     id="decentralized-ids-differ"),
    ],
)
def test_create_rules(spec, cluster, trusted, causes):
    body = vmim(**spec)
    if not causes:
        admit(VMIM, body, operation="CREATE", cluster=cluster, trusted=trusted)
        return
    with pytest.raises(Invalid) as info:
        admit(VMIM, body, operation="CREATE", cluster=cluster, trusted=trusted)
    assert info.value.code == 422
    assert [(c.field, c.reason, c.message) for c in info.value.causes] == causes


# ---- update rules ---------------------------------------------------------------------------

def _stored_vmim():
    return admit(VMIM, vmim(), operation="CREATE").obj


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda o: o["spec"].update(vmiName="b"), "update of Migration object's spec is restricted",
                     id="vmiName"),
        pytest.param(lambda o: o["spec"].update(addedNodeSelector={"a": "b"}),
                     "update of Migration object's spec is restricted", id="addedNodeSelector"),
        pytest.param(lambda o: o["metadata"].pop("labels"),
                     "selector label can't be removed from an in-flight migration", id="labels-removed"),
        pytest.param(lambda o: o["metadata"]["labels"].pop("kubevirt.io/vmi-name"),
                     "selector label can't be modified on an in-flight migration", id="label-removed"),
        pytest.param(lambda o: o["metadata"]["labels"].update({"kubevirt.io/vmi-name": "x"}),
                     "selector label can't be modified on an in-flight migration", id="label-changed"),
    ],
)
def test_update_refusals(change, message):
    old = _stored_vmim()
    new = copy.deepcopy(old)
    change(new)
    with pytest.raises(Invalid) as info:
        admit(VMIM, new, operation="UPDATE", old=old)
    assert [(c.reason, c.message) for c in info.value.causes] == [("FieldValueNotSupported", message)]


def test_update_of_labels_and_annotations_is_allowed_and_a_final_migration_may_drop_the_label():
    old = _stored_vmim()
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "a"
    new["metadata"]["annotations"] = {"note": "x"}
    admit(VMIM, new, operation="UPDATE", old=old)
    final = copy.deepcopy(old)
    final["status"] = {"phase": "Succeeded"}
    final["metadata"].pop("labels")
    admit(VMIM, final, operation="UPDATE", old=old)


# ---- store-reading create rules (pure decision) ---------------------------------------------

@pytest.mark.parametrize(
    ("the_vmi", "migrations", "spec", "refusal"),
    [
        pytest.param(None, [], {}, 'the VMI "ns/guest" does not exist', id="vmi-missing"),
        pytest.param(vmi("Succeeded"), [], {}, "Cannot migrate VMI in finalized state.", id="vmi-succeeded"),
        pytest.param(vmi("Failed"), [], {}, "Cannot migrate VMI in finalized state.", id="vmi-failed"),
        pytest.param(vmi(conditions=[{"type": "LiveMigratable", "status": "False",
                                      "reason": "DisksNotLiveMigratable",
                                      "message": "hostDisk disk0 is not shared"}]), [], {},
                     "Cannot migrate VMI, Reason: DisksNotLiveMigratable, Message: hostDisk disk0 is not shared",
                     id="not-migratable"),
        pytest.param(vmi(conditions=[{"type": "LiveMigratable", "status": "False",
                                      "reason": "DisksNotLiveMigratable", "message": "m"}]), [],
                     {"receive": {"migrationID": "x"}}, None, id="disks-ok-for-decentralized"),
        pytest.param(vmi(conditions=[{"type": "LiveMigratable", "status": "True"}]), [], {}, None,
                     id="migratable"),
        pytest.param(vmi("Scheduling"), [], {}, None, id="not-yet-running-waits-as-in-kubevirt"),
        pytest.param(vmi(), [stored("a", "Succeeded", "u1"), stored("b", "Failed", "u2")], {}, None,
                     id="only-final-migrations"),
        pytest.param(vmi(), [stored("a", "Succeeded", "u1"), stored("b", "Running", "u2")], {},
                     "in-flight migration detected. Active migration job (u2) is currently already in progress "
                     "for VMI guest.", id="one-in-flight"),
        pytest.param(vmi(), [stored("a", None, "u3")], {},
                     "in-flight migration detected. Active migration job (u3) is currently already in progress "
                     "for VMI guest.", id="phase-unset-is-in-flight"),
    ],
)
def test_create_refusal(the_vmi, migrations, spec, refusal):
    assert compute_create_refusal(vmim(**spec), the_vmi, migrations) == refusal


def test_admission_denied_is_400_with_the_webhook_prefix_and_no_reason():
    err = admission_denied("migration-create-validator.kubevirt.io", "Cannot migrate VMI in finalized state.")
    status = err.to_status()
    assert (status["code"], status["reason"]) == (400, "")
    assert status["message"] == ('admission webhook "migration-create-validator.kubevirt.io" denied the request: '
                                 "Cannot migrate VMI in finalized state.")
    assert "details" not in status


def test_only_one_kubevirt_object():
    assert compute_kubevirt_create_refusal([]) is None
    assert compute_kubevirt_create_refusal([{"metadata": {"name": "kubevirt"}}]) == "Kubevirt is already created"


# ---- KubeVirt object --------------------------------------------------------------------------

P = "spec.configuration.migrations"


@pytest.mark.parametrize(
    ("migrations", "causes"),
    [
        pytest.param(None, [], id="unset"),
        pytest.param({"parallelMigrationsPerCluster": 5, "parallelOutboundMigrationsPerNode": 2,
                      "bandwidthPerMigration": "64Mi", "maxDowntimeMs": 300, "completionTimeoutPerGiB": 150,
                      "progressTimeout": 150, "allowPostCopy": True}, [], id="valid"),
        pytest.param({"maxDowntimeMs": 0}, [(f"{P}.maxDowntimeMs", f"Invalid value: 0: {P}.maxDowntimeMs in body "
                                             "should be greater than or equal to 1")], id="downtime-0"),
        pytest.param({"maxDowntimeMs": 2000001}, [(f"{P}.maxDowntimeMs", f"Invalid value: 2000001: {P}.maxDowntimeMs "
                                                   "in body should be less than or equal to 2000000")],
                     id="downtime-too-big"),
        pytest.param({"parallelMigrationsPerCluster": -1},
                     [(f"{P}.parallelMigrationsPerCluster", f"Invalid value: -1: {P}.parallelMigrationsPerCluster "
                       "in body should be greater than or equal to 0")], id="parallel-negative"),
        pytest.param({"bandwidthPerMigration": "fast"},
                     [(f"{P}.bandwidthPerMigration", f"Invalid value: 'fast': {P}.bandwidthPerMigration "
                       "is not a quantity")], id="bandwidth-syntax"),
        pytest.param({"bandwidthPerMigration": "-1Mi"},
                     [(f"{P}.bandwidthPerMigration", f"Invalid value: '-1Mi': {P}.bandwidthPerMigration "
                       "must not be negative")], id="bandwidth-negative"),
    ],
)
def test_kubevirt_migration_configuration(migrations, causes):
    got = compute_migration_configuration_causes(migrations)
    assert [(c.field, c.message) for c in got] == causes


def test_kubevirt_object_is_admitted_with_its_types_checked():
    body = {"metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {"migrations": {"maxDowntimeMs": 0}}}}
    with pytest.raises(Invalid) as info:
        admit(KUBEVIRT, body, operation="CREATE")
    assert info.value.code == 422
    assert [c.field for c in info.value.causes] == [f"{P}.maxDowntimeMs"]
    body["spec"]["configuration"]["migrations"] = {"parallelMigrationsPerCluster": "five"}
    with pytest.raises(Invalid):
        admit(KUBEVIRT, body, operation="CREATE")
    body["spec"]["configuration"]["migrations"] = {"parallelMigrationsPerCluster": 3}
    obj = admit(KUBEVIRT, body, operation="CREATE").obj
    assert obj["spec"]["configuration"]["migrations"] == {"parallelMigrationsPerCluster": 3}
