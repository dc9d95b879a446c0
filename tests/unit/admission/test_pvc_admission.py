"""PersistentVolumeClaim admission as kube-apiserver's: defaults, the protection finalizer,
required fields, and spec immutability except growing a bound claim's storage request."""

from __future__ import annotations

import copy

import pytest

from shared.admission import admit
from shared.admission.context import AdmissionContext
from shared.admission.pvc_rules import admit_pvc
from shared.api.resources import PERSISTENT_VOLUME_CLAIM
from shared.errors import Invalid


def claim(**spec):
    base = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "ns"},
            "spec": {k: v for k, v in base.items() if v is not None}}


def causes(obj, ctx=AdmissionContext(operation="CREATE")):
    return [(c.reason, c.field, c.message) for c in admit_pvc(obj, ctx)]


def test_create_defaults_volume_mode_and_adds_the_protection_finalizer():
    result = admit(PERSISTENT_VOLUME_CLAIM, claim(), operation="CREATE")
    assert result.obj["spec"]["volumeMode"] == "Filesystem"
    assert result.obj["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]


@pytest.mark.parametrize("spec, expected", [
    ({"accessModes": None}, [("FieldValueRequired", "spec.accessModes",
                              "Required value: at least 1 access mode is required")]),
    ({"accessModes": ["ReadWriteSometimes"]}, [("FieldValueNotSupported", "spec.accessModes",
                                                'Unsupported value: "ReadWriteSometimes": supported values: '
                                                '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", '
                                                '"ReadWriteOncePod"')]),
    ({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]}, [
        ("FieldValueForbidden", "spec.accessModes", "Forbidden: may not use ReadWriteOncePod with other access modes")]),
    ({"resources": {}}, [("FieldValueRequired", "spec.resources[storage]", "Required value")]),
    ({"resources": {"requests": {"storage": "0"}}},
     [("FieldValueInvalid", "spec.resources[storage]", 'Invalid value: "0": must be greater than zero')]),
    ({"volumeMode": "Tape"}, [("FieldValueNotSupported", "spec.volumeMode",
                               'Unsupported value: "Tape": supported values: "Block", "Filesystem"')]),
    ({"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}, []),
])
def test_spec_validation(spec, expected):
    assert causes(claim(**spec)) == expected


def test_refusal_message_is_kube_apiservers():
    with pytest.raises(Invalid) as err:
        admit(PERSISTENT_VOLUME_CLAIM, claim(accessModes=None, resources={}), operation="CREATE")
    assert err.value.message == ('PersistentVolumeClaim "data" is invalid: [spec.accessModes: Required value: at '
                                 "least 1 access mode is required, spec.resources[storage]: Required value]")
    assert err.value.to_status()["details"]["kind"] == "PersistentVolumeClaim"


def stored(phase=None, **spec):
    obj = claim(volumeMode="Filesystem", **spec)
    if phase:
        obj["status"] = {"phase": phase, "capacity": {"storage": "1Gi"}}
    return obj


IMMUTABLE = ("FieldValueForbidden", "spec", "Forbidden: spec is immutable after creation except resources.requests "
             "and volumeAttributesClassName for bound claims")
SHRINK = ("FieldValueForbidden", "spec.resources.requests.storage",
          "Forbidden: field can not be less than previous value")


@pytest.mark.parametrize("old, change, expected", [
    (stored("Bound"), lambda s: s["resources"]["requests"].update(storage="2Gi"), []),
    (stored("Bound"), lambda s: s["resources"]["requests"].update(storage="1024Mi"), []),
    (stored("Bound"), lambda s: s["resources"]["requests"].update(storage="512Mi"), [SHRINK]),
    (stored("Pending"), lambda s: s["resources"]["requests"].update(storage="2Gi"), [IMMUTABLE]),
    (stored("Bound"), lambda s: s.update(accessModes=["ReadWriteMany"]), [IMMUTABLE]),
    (stored("Bound"), lambda s: s.update(volumeName="pvc-1"), []),  # unset -> set: the binder's write
    (stored("Bound", volumeName="pvc-1"), lambda s: s.update(volumeName="pvc-2"), [IMMUTABLE]),
    (stored("Bound"), lambda s: s.update(storageClassName="local"), []),  # unset -> set is allowed
    (stored("Bound", storageClassName="local"), lambda s: s.update(storageClassName="fast"), [IMMUTABLE]),
    (stored("Bound"), lambda s: s.pop("volumeMode"), []),  # defaulted again
])
def test_update_keeps_the_spec_except_growing_a_bound_claim(old, change, expected):
    new = copy.deepcopy(old)
    new.pop("status", None)
    change(new["spec"])
    assert causes(new, AdmissionContext(operation="UPDATE", old=old)) == expected
