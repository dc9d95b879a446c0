"""Table tests of the local provisioner's decision (services.virt_snapshot.provisioner_decision)."""

from __future__ import annotations

import pytest

from services.virt_snapshot.provisioner_decision import (
    FILESYSTEM_ONLY_MESSAGE,
    MISSING_SIZE_MESSAGE,
    ProvisionStep,
    compute_provision,
    requested_bytes,
    volume_name_of,
)
from shared.api.storage import PersistentVolumeClaim
from shared.informer import decode_as

PROTECT = "kubernetes.io/pvc-protection"


def claim(*, finalizers=(PROTECT,), deleting=False, phase=None, storage_class=None, volume_mode=None,
          size="1Gi", data_source=None, access_modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(access_modes)}
    if size is not None:
        spec["resources"] = {"requests": {"storage": size}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if volume_mode is not None:
        spec["volumeMode"] = volume_mode
    if data_source is not None:
        spec["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": data_source}
    meta = {"name": "data", "namespace": "default", "uid": "u-1", "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    body = {"metadata": meta, "spec": spec}
    if phase is not None:
        body["status"] = {"phase": phase}
    return decode_as(PersistentVolumeClaim, body)


CASES = [
    # (name, claim, in_use, copy_exists, disk_exists, step, message, size, source)
    ("first sight adds the protection finalizer", claim(finalizers=()), False, False, False,
     ProvisionStep.ADD_FINALIZER, "", 0, None),
    ("empty claim without class is provisioned", claim(), False, False, False,
     ProvisionStep.PROVISION, "", 2**30, None),
    ("class local is ours", claim(storage_class="local", phase="Pending"), False, False, False,
     ProvisionStep.PROVISION, "", 2**30, None),
    ("unknown class stays Pending", claim(storage_class="fast"), False, False, False,
     ProvisionStep.REFUSE, 'storageclass.storage.k8s.io "fast" not found', 0, None),
    ("Block mode refused", claim(volume_mode="Block"), False, False, False,
     ProvisionStep.REFUSE, FILESYSTEM_ONLY_MESSAGE, 0, None),
    ("Filesystem mode accepted", claim(volume_mode="Filesystem", size="512Mi"), False, False, False,
     ProvisionStep.PROVISION, "", 512 * 2**20, None),
    ("no size refused", claim(size=None), False, False, False,
     ProvisionStep.REFUSE, MISSING_SIZE_MESSAGE, 0, None),
    ("zero size refused", claim(size="0"), False, False, False,
     ProvisionStep.REFUSE, MISSING_SIZE_MESSAGE, 0, None),
    ("copy source present", claim(data_source="vs-1"), False, True, False,
     ProvisionStep.PROVISION, "", 2**30, "vs-1"),
    ("copy source missing", claim(data_source="vs-1"), False, False, False,
     ProvisionStep.REFUSE, 'volumesnapshots.snapshot.storage.k8s.io "vs-1" not found', 0, None),
    ("disk made before a crash: bind only", claim(data_source="vs-1"), False, False, True,
     ProvisionStep.BIND, "", 2**30, "vs-1"),
    ("bound claim: nothing", claim(phase="Bound"), True, False, True, ProvisionStep.NOTHING, "", 0, None),
    ("lost claim: nothing", claim(phase="Lost"), False, False, False, ProvisionStep.NOTHING, "", 0, None),
    ("deleting while a VMI uses it", claim(deleting=True, phase="Bound"), True, False, True,
     ProvisionStep.WAIT_IN_USE, "", 0, None),
    ("deleting unused", claim(deleting=True, phase="Bound"), False, False, True,
     ProvisionStep.RELEASE, "", 0, None),
    ("deleting without our finalizer", claim(deleting=True, finalizers=("other",)), False, False, True,
     ProvisionStep.NOTHING, "", 0, None),
]


@pytest.mark.parametrize(("pvc", "in_use", "copy_exists", "disk_exists", "step", "message", "size", "source"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compute_provision(pvc, in_use, copy_exists, disk_exists, step, message, size, source):
    decision = compute_provision(pvc, in_use=in_use, copy_exists=copy_exists, disk_exists=disk_exists)
    assert decision.step == step
    assert decision.message == message
    assert decision.size_bytes == size
    assert decision.source_copy == source


@pytest.mark.parametrize(("size", "expected"), [("1Gi", 2**30), ("10M", 10**7), ("100", 100), ("bogus", None)])
def test_requested_bytes(size, expected):
    assert requested_bytes(claim(size=size)) == expected


def test_volume_name_is_pvc_uid():
    assert volume_name_of("abc") == "pvc-abc"


SUPPORTED = "(supported: ReadWriteOnce, ReadWriteOncePod)"
GI = 2**30

CAPACITY_CASES = [
    # (name, claim, disk_exists, free_bytes, step, message)
    ("fits in the free space", claim(size="1Gi"), False, 2 * GI, ProvisionStep.PROVISION, ""),
    ("exactly the free space", claim(size="1Gi"), False, GI, ProvisionStep.PROVISION, ""),
    ("free space unknown: not checked", claim(size="1Ti"), False, None, ProvisionStep.PROVISION, ""),
    ("more than the free space", claim(size="3Gi"), False, 2 * GI, ProvisionStep.REFUSE,
     "insufficient capacity: requested storage 3Gi but the local storage directory has 2Gi free"),
    ("900Ei: larger than a qcow2 can be", claim(size="900Ei"), False, None, ProvisionStep.REFUSE,
     f"requested storage 900Ei ({900 * 2**60} bytes) is larger than the local provisioner's maximum of 2Pi"),
    ("2Pi is the qcow2 maximum", claim(size="2Pi"), False, None, ProvisionStep.PROVISION, ""),
    ("copy larger than the free space", claim(size="3Gi", data_source="vs-1"), False, GI, ProvisionStep.REFUSE,
     "insufficient capacity: requested storage 3Gi but the local storage directory has 1Gi free"),
    ("own disk already made: bound whatever the free space", claim(size="3Gi"), True, 0, ProvisionStep.BIND, ""),
    ("ReadWriteOncePod supported", claim(access_modes=("ReadWriteOncePod",)), False, 2 * GI,
     ProvisionStep.PROVISION, ""),
    ("ReadWriteMany refused", claim(access_modes=("ReadWriteMany",)), False, 2 * GI, ProvisionStep.REFUSE,
     f"local provisioner gives node-local disks: access modes ReadWriteMany not supported {SUPPORTED}"),
    ("ReadOnlyMany with ReadWriteOnce refused", claim(access_modes=("ReadWriteOnce", "ReadOnlyMany")), False,
     2 * GI, ProvisionStep.REFUSE,
     f"local provisioner gives node-local disks: access modes ReadOnlyMany not supported {SUPPORTED}"),
]


@pytest.mark.parametrize(("pvc", "disk_exists", "free", "step", "message"),
                         [c[1:] for c in CAPACITY_CASES], ids=[c[0] for c in CAPACITY_CASES])
def test_capacity_and_access_modes(pvc, disk_exists, free, step, message):
    decision = compute_provision(pvc, in_use=False, copy_exists=True, disk_exists=disk_exists, free_bytes=free)
    assert (decision.step, decision.message) == (step, message)
