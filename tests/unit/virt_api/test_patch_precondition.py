"""Which resourceVersion a patch itself sets: the precondition an unconditional patch lacks (pure)."""
import pytest

from services.virt_api.patch import compute_patch_precondition

CURRENT = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": "vm", "namespace": "ns", "resourceVersion": "7"}, "spec": {}}


@pytest.mark.parametrize(
    ("raw", "content_type", "pinned"),
    [
        pytest.param(b'{"metadata":{"labels":{"a":"1"}}}', "application/merge-patch+json", None, id="merge-unpinned"),
        pytest.param(b'{"metadata":{"resourceVersion":"5","labels":{"a":"1"}}}', "application/merge-patch+json", "5",
                     id="merge-pinned"),
        pytest.param(b'[{"op":"add","path":"/metadata/labels","value":{"a":"1"}}]', "application/json-patch+json",
                     None, id="json-unpinned"),
        pytest.param(b'[{"op":"add","path":"/metadata/resourceVersion","value":"6"}]', "application/json-patch+json",
                     "6", id="json-pinned"),
        pytest.param(b'[{"op":"test","path":"/metadata/resourceVersion","value":"7"}]', "application/json-patch+json",
                     None, id="json-test-is-decided-on-the-object"),
    ],
)
def test_patch_precondition(raw, content_type, pinned):
    assert compute_patch_precondition(CURRENT, raw, content_type, "kubevirt.io") == pinned
