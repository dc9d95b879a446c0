"""The resource registry answers lookups by URL and by kind, as KubeVirt's CRDs define them."""

import msgspec
import pytest

from shared.api.resources import RESOURCES, find_resource, resource_for_kind
from shared.errors import NotFound


@pytest.mark.parametrize(
    ("group", "version", "plural", "kind", "short", "namespaced"),
    [
        pytest.param("kubevirt.io", "v1", "virtualmachines", "VirtualMachine", ("vm", "vms"), True, id="vm"),
        pytest.param(
            "kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance", ("vmi", "vmis"), True, id="vmi"
        ),
        pytest.param(
            "kubevirt.io",
            "v1",
            "virtualmachineinstancereplicasets",
            "VirtualMachineInstanceReplicaSet",
            ("vmirs", "vmirss"),
            True,
            id="vmirs",
        ),
        pytest.param(
            "kubevirt.io",
            "v1",
            "virtualmachineinstancemigrations",
            "VirtualMachineInstanceMigration",
            ("vmim", "vmims"),
            True,
            id="vmim",
        ),
        pytest.param(
            "pool.kubevirt.io", "v1beta1", "virtualmachinepools", "VirtualMachinePool", ("vmpool", "vmpools"), True,
            id="pool",
        ),
        pytest.param("migrations.kubevirt.io", "v1alpha1", "migrationpolicies", "MigrationPolicy", (), False, id="mp"),
        pytest.param("", "v1", "nodes", "Node", ("no",), False, id="node"),
        pytest.param("coordination.k8s.io", "v1", "leases", "Lease", (), True, id="lease"),
    ],
)
def test_resources_are_found_by_plural_and_kind(group, version, plural, kind, short, namespaced):
    info = find_resource(group, version, plural)
    assert info.kind == kind
    assert info.short_names == short
    assert info.namespaced is namespaced
    assert info.list_kind == kind + "List"
    assert resource_for_kind(info.api_version, kind) is info


def test_core_group_api_version_has_no_group_prefix():
    assert find_resource("", "v1", "nodes").api_version == "v1"
    assert find_resource("kubevirt.io", "v1", "virtualmachines").api_version == "kubevirt.io/v1"


def test_vm_has_status_subresource_and_vmi_does_not():
    assert find_resource("kubevirt.io", "v1", "virtualmachines").has_status_subresource
    assert not find_resource("kubevirt.io", "v1", "virtualmachineinstances").has_status_subresource


@pytest.mark.parametrize(
    ("call", "args"),
    [
        pytest.param(find_resource, ("kubevirt.io", "v1", "pods"), id="unknown-plural"),
        pytest.param(find_resource, ("kubevirt.io", "v2", "virtualmachines"), id="unknown-version"),
        pytest.param(resource_for_kind, ("kubevirt.io/v1", "Pod"), id="unknown-kind"),
    ],
)
def test_unknown_resources_raise_not_found(call, args):
    with pytest.raises(NotFound) as info:
        call(*args)
    assert info.value.code == 404


def test_every_resource_type_decodes_a_minimal_object():
    minimal_specs = {
        "VirtualMachine": {"template": {}},
        "VirtualMachineInstance": {"domain": {}},
        "VirtualMachineInstanceReplicaSet": {"selector": {}, "template": {}},
        "VirtualMachineInstanceMigration": {},
        "VirtualMachinePool": {"selector": {}, "virtualMachineTemplate": {}},
        "MigrationPolicy": {"selectors": {}},
        "KubeVirt": {},
        "Node": {},
        "Lease": {},
        "VirtualMachineSnapshot": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}},
        "VirtualMachineSnapshotContent": {"source": {}},
        "VirtualMachineRestore": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"},
                                  "virtualMachineSnapshotName": "snap"},
        "PersistentVolumeClaim": {},
    }
    for info in RESOURCES:
        body = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "x"},
                "spec": minimal_specs[info.kind]}
        decoded = msgspec.convert(body, info.type)
        assert msgspec.to_builtins(decoded) == body
