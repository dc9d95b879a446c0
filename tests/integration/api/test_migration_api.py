"""Live-migration API through real HTTP against virt-api: VMIM admission as KubeVirt's (codes and
messages), the VMIM mutator, spec immutability, deletion held by the finalizer, the VM
``migrate`` subresource, and the KubeVirt configuration object."""

from __future__ import annotations

import pytest

from tests.integration.api.vm_factory import make_vm, make_vmi

V1 = "/apis/kubevirt.io/v1"
SUB = "/apis/subresources.kubevirt.io/v1"
DENIED = 'admission webhook "migration-create-validator.kubevirt.io" denied the request: '


@pytest.fixture
def http(api):
    with api.session() as session:
        yield lambda method, path, **kw: session.request(method, api.url + path, timeout=30, **kw)


def vmim_body(vmi_name: str, name: str | None = None) -> dict:
    meta = {"name": name} if name else {"generateName": "mig-"}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": meta,
            "spec": {"vmiName": vmi_name}}


def put_vmi(http, namespace: str, name: str, phase: str, conditions: list | None = None) -> dict:
    """Create (if needed) the VMI and write its status phase and conditions."""
    path = f"{V1}/namespaces/{namespace}/virtualmachineinstances"
    resp = http("GET", f"{path}/{name}")
    vmi = resp.json() if resp.status_code == 200 else http("POST", path, json=make_vmi(name)).json()
    vmi["status"] = {**(vmi.get("status") or {}), "phase": phase, "conditions": conditions or []}
    resp = http("PUT", f"{path}/{name}", json=vmi)  # KubeVirt VMIs have no status subresource
    assert resp.status_code == 200, resp.text
    return resp.json()


def create_vmim(http, namespace: str, vmi_name: str, name: str | None = None, query: str = ""):
    return http("POST", f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations{query}",
                json=vmim_body(vmi_name, name))


def assert_denied(resp, message: str) -> None:
    assert resp.status_code == 400, resp.text
    status = resp.json()
    assert status["kind"] == "Status" and status["code"] == 400
    assert status["message"] == DENIED + message
    assert not status.get("reason") and "details" not in status


def test_vmim_for_a_missing_vmi_is_refused_even_on_dry_run(http, namespace):
    assert_denied(create_vmim(http, namespace, "ghost"), f'the VMI "{namespace}/ghost" does not exist')
    assert_denied(create_vmim(http, namespace, "ghost", query="?dryRun=All"),
                  f'the VMI "{namespace}/ghost" does not exist')


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_vmim_for_a_final_vmi_is_refused(http, namespace, phase):
    put_vmi(http, namespace, "done", phase)
    assert_denied(create_vmim(http, namespace, "done"), "Cannot migrate VMI in finalized state.")


def test_vmim_for_a_not_migratable_vmi_is_refused(http, namespace):
    put_vmi(http, namespace, "pinned", "Running", [{
        "type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
        "message": "cannot migrate VMI: hostDisk disk0 is not shared"}])
    assert_denied(create_vmim(http, namespace, "pinned"),
                  "Cannot migrate VMI, Reason: DisksNotLiveMigratable, "
                  "Message: cannot migrate VMI: hostDisk disk0 is not shared")


def test_vmim_is_mutated_refused_when_another_is_in_flight_immutable_and_held_by_its_finalizer(http, namespace):
    put_vmi(http, namespace, "guest", "Running", [{"type": "LiveMigratable", "status": "True"}])
    resp = create_vmim(http, namespace, "guest", name="first")
    assert resp.status_code == 201, resp.text
    first = resp.json()
    assert first["metadata"]["labels"] == {"kubevirt.io/vmi-name": "guest"}
    assert first["metadata"]["finalizers"] == ["kubevirt.io/migrationJobFinalize"]

    in_flight = (f"in-flight migration detected. Active migration job ({first['metadata']['uid']}) is currently "
                 "already in progress for VMI guest.")
    assert_denied(create_vmim(http, namespace, "guest"), in_flight)

    path = f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations/first"
    resp = http("PATCH", path, data='{"spec": {"vmiName": "other"}}',
                headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["details"]["causes"] == [{"reason": "FieldValueNotSupported", "field": "",
                                                 "message": "update of Migration object's spec is restricted"}]
    resp = http("PATCH", path, data='{"metadata": {"labels": {"kubevirt.io/vmi-name": "x"}}}',
                headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 422
    assert "selector label can't be modified on an in-flight migration" in resp.json()["message"]

    # delete: the finalizer keeps it (deletionTimestamp) until its owner (virt-migration) lets go
    resp = http("DELETE", path)
    assert resp.status_code == 200, resp.text
    held = http("GET", path).json()
    assert held["metadata"]["deletionTimestamp"]
    assert_denied(create_vmim(http, namespace, "guest"), in_flight)  # still not final
    resp = http("PATCH", path, data='{"metadata": {"finalizers": null}}',
                headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status_code == 200, resp.text
    assert http("GET", path).status_code == 404


def test_a_final_migration_does_not_block_the_next(http, namespace):
    put_vmi(http, namespace, "again", "Running")
    first = create_vmim(http, namespace, "again", name="old").json()
    path = f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations/old/status"
    first["status"] = {"phase": "Succeeded"}
    assert http("PUT", path, json=first).status_code == 200
    assert create_vmim(http, namespace, "again", name="new").status_code == 201


# ---- the VM migrate subresource -------------------------------------------------------------

def migrate(http, namespace: str, name: str, body: dict | None = None):
    return http("PUT", f"{SUB}/namespaces/{namespace}/virtualmachines/{name}/migrate", json=body)


def list_vmims(http, namespace: str) -> list[dict]:
    return http("GET", f"{V1}/namespaces/{namespace}/virtualmachineinstancemigrations").json()["items"]


def test_migrate_subresource(http, namespace):
    resp = migrate(http, namespace, "vm1")
    assert resp.status_code == 404 and resp.json()["message"] == 'virtualmachines.kubevirt.io "vm1" not found'

    assert http("POST", f"{V1}/namespaces/{namespace}/virtualmachines", json=make_vm("vm1")).status_code == 201
    assert migrate(http, namespace, "vm1").status_code == 404  # no VMI

    put_vmi(http, namespace, "vm1", "Scheduling")
    resp = migrate(http, namespace, "vm1")
    assert resp.status_code == 409
    assert resp.json()["message"] == 'Operation cannot be fulfilled on virtualmachine.kubevirt.io "vm1": VM is not running'

    put_vmi(http, namespace, "vm1", "Running")
    assert migrate(http, namespace, "vm1", {"dryRun": ["All"]}).status_code == 202
    assert list_vmims(http, namespace) == []

    resp = migrate(http, namespace, "vm1", {"addedNodeSelector": {"zone": "b"}})
    assert resp.status_code == 202, resp.text
    [vmim] = list_vmims(http, namespace)
    assert vmim["metadata"]["name"].startswith("kubevirt-migrate-vm-")
    assert vmim["spec"] == {"vmiName": "vm1", "addedNodeSelector": {"zone": "b"}}
    assert vmim["metadata"]["finalizers"] == ["kubevirt.io/migrationJobFinalize"]

    resp = migrate(http, namespace, "vm1")
    assert resp.status_code == 500
    assert resp.json()["message"] == (
        "Internal error occurred: " + DENIED + f"in-flight migration detected. Active migration job "
        f"({vmim['metadata']['uid']}) is currently already in progress for VMI vm1.")

    resp = migrate(http, namespace, "vm1", {"addedNodeSelector": ["zone"]})
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("Can not unmarshal Request body to struct, error: ")


# ---- the KubeVirt object ----------------------------------------------------------------------

def test_kubevirt_object_one_per_installation_validated_and_patchable(http, namespace):
    path = f"{V1}/namespaces/{namespace}/kubevirts"
    existing = http("GET", f"{V1}/kubevirts").json()["items"]
    body = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt"},
            "spec": {"configuration": {"migrations": {"maxDowntimeMs": 0}}}}
    resp = http("POST", path, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["details"]["causes"][0]["field"] == "spec.configuration.migrations.maxDowntimeMs"
    body["spec"]["configuration"]["migrations"] = {"parallelMigrationsPerCluster": 3}
    resp = http("POST", path, json=body)
    if existing:  # another test's installation made one already
        assert resp.status_code == 400
        assert resp.json()["message"].endswith("denied the request: Kubevirt is already created")
        return
    assert resp.status_code == 201, resp.text
    try:
        again = http("POST", f"{V1}/namespaces/{namespace}-b/kubevirts", json={**body, "metadata": {"name": "x"}})
        assert again.status_code == 400
        assert again.json()["message"] == ('admission webhook "kubevirt-create-validator.kubevirt.io" denied the '
                                           "request: Kubevirt is already created")
        patch = {"spec": {"configuration": {"migrations": {"bandwidthPerMigration": "fast"}}}}
        resp = http("PATCH", f"{path}/kubevirt", json=patch, headers={"Content-Type": "application/merge-patch+json"})
        assert resp.status_code == 422
        patch = {"spec": {"configuration": {"migrations": {"bandwidthPerMigration": "64Mi"}}}}
        resp = http("PATCH", f"{path}/kubevirt", json=patch, headers={"Content-Type": "application/merge-patch+json"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["spec"]["configuration"]["migrations"] == {
            "parallelMigrationsPerCluster": 3, "bandwidthPerMigration": "64Mi"}
    finally:
        http("DELETE", f"{path}/kubevirt")


async def test_up_creates_the_kubevirt_object_once_and_keeps_a_users_edits(private_api):
    from services.virtctl.kubevirt_object import apply_kubevirt_object

    assert await apply_kubevirt_object(private_api.kubeconfig) == (
        "kubevirt/kubevirt created (migration settings: kubectl edit kubevirt kubevirt -n kubevirt)")
    with private_api.session() as s:
        path = f"{private_api.url}{V1}/namespaces/kubevirt/kubevirts/kubevirt"
        stored = s.get(path).json()
        assert stored["status"] == {"phase": "Deployed"}
        assert stored["spec"]["configuration"]["migrations"] == {}
        resp = s.patch(path, data='{"spec": {"configuration": {"migrations": {"parallelMigrationsPerCluster": 2}}}}',
                       headers={"Content-Type": "application/merge-patch+json"})
        assert resp.status_code == 200, resp.text
        assert await apply_kubevirt_object(private_api.kubeconfig) == "kubevirt/kubevirt unchanged"
        assert s.get(path).json()["spec"]["configuration"]["migrations"] == {"parallelMigrationsPerCluster": 2}
