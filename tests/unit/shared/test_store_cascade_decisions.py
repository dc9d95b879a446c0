"""The store's pure maintenance decisions: what an inline cascade does with one dependent
(shared.store.ownership.compute_cascade_action) and when a maintenance pass compacts
(shared.store.objectstore.compute_compaction_due)."""

from __future__ import annotations

import pytest

from shared.nats_auth import compute_writable_plurals
from shared.store.objectstore import compute_compaction_due
from shared.store.ownership import CascadeAction, compute_cascade_action


def owned(*uids: str) -> dict:
    return {"metadata": {"name": "d", "namespace": "default",
                         "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                              "name": f"vm-{uid}", "uid": uid} for uid in uids]}}


CONTROLLER = compute_writable_plurals("virt-controller")


@pytest.mark.parametrize(("plural", "dependent", "writable", "action"), [
    # no limit known (virt-api, admin): delete, or only drop the reference when another owner lives
    ("virtualmachinerestores", owned("u1"), None, CascadeAction.DELETE),
    ("virtualmachinerestores", owned("u1", "u2"), None, CascadeAction.DROP_REFERENCE),
    # virt-controller writes VMIs but not restores or PVCs: those wait for the collector
    ("virtualmachineinstances", owned("u1"), CONTROLLER, CascadeAction.DELETE),
    ("virtualmachineinstances", owned("u1", "u2"), CONTROLLER, CascadeAction.DROP_REFERENCE),
    ("virtualmachinerestores", owned("u1"), CONTROLLER, CascadeAction.LEAVE_TO_COLLECTOR),
    ("persistentvolumeclaims", owned("u1"), CONTROLLER, CascadeAction.LEAVE_TO_COLLECTOR),
    ("persistentvolumeclaims", owned("u1", "u2"), CONTROLLER, CascadeAction.LEAVE_TO_COLLECTOR),
    # a stale hint: the dependent no longer refers to the owner
    ("virtualmachineinstances", owned("u2"), CONTROLLER, CascadeAction.NOTHING),
    ("persistentvolumeclaims", owned(), CONTROLLER, CascadeAction.NOTHING),
])
def test_cascade_action(plural, dependent, writable, action):
    assert compute_cascade_action(plural, dependent, "u1", writable) is action


@pytest.mark.parametrize(("now", "last", "interval", "due"), [
    (5.0, None, 300.0, True),  # the first pass compacts
    (100.0, 0.0, 300.0, False),
    (300.0, 0.0, 300.0, True),
    (301.0, 0.5, 300.0, True),
    (10.0, 9.0, 0.0, True),  # 0: every pass
])
def test_compaction_due(now, last, interval, due):
    assert compute_compaction_due(now, last, interval) is due
