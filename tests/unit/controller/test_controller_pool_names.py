"""Pool VM naming and the VM made from a pool's template (pure)."""
import pytest

from controller_objects import pool as typed_pool

from services.virt_controller.pool_controller import compute_free_indexes, compute_vm_for_pool, compute_vm_index


@pytest.mark.parametrize(
    ("vm_name", "index"),
    [
        pytest.param("web-0", 0, id="zero"),
        pytest.param("web-12", 12, id="two-digits"),
        pytest.param("web-x", None, id="not-a-number"),
        pytest.param("webby-1", None, id="other-prefix"),
        pytest.param("web-1-2", None, id="nested"),
    ],
)
def test_index_of_a_pool_vm(vm_name, index):
    assert compute_vm_index("web", vm_name) == index


def test_lowest_free_indexes_fill_gaps_first():
    assert compute_free_indexes({0, 2, 3}, 3) == [1, 4, 5]
    assert compute_free_indexes(set(), 2) == [0, 1]


def test_vm_from_template_is_owned_by_the_pool():
    pool = typed_pool({"metadata": {"name": "web", "namespace": "ns", "uid": "p1"},
                       "spec": {"selector": {}, "virtualMachineTemplate": {
                           "metadata": {"labels": {"a": "b"}},
                           "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {}}}}}}})
    vm = compute_vm_for_pool(pool, 4)
    assert vm["metadata"]["name"] == "web-4"
    assert vm["metadata"]["labels"] == {"a": "b"}
    assert vm["metadata"]["ownerReferences"] == [{
        "apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool", "name": "web", "uid": "p1",
        "controller": True, "blockOwnerDeletion": True}]
    assert vm["spec"] == {"runStrategy": "Always", "template": {"spec": {"domain": {}}}}
