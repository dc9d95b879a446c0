"""Helpers for handler tests (imported by name; fixtures are in conftest.py)."""

from __future__ import annotations

import uuid

from polling import wait_until  # noqa: F401 - re-exported for the handler tests

GI = 2**30
NODE = "node1"
VMIS = "virtualmachineinstances"




def make_vmi(name="vm1", *, namespace="default", node=NODE, phase="Scheduled", memory="64Mi",
             finalizers=None, volumes=None, disks=None, grace=None, start_strategy=None):
    """A VMI as the scheduler leaves it: placed on ``node`` in phase ``phase``."""
    vmi = {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"domain": {"devices": {"disks": disks or []}, "resources": {"requests": {"memory": memory}}},
                 "volumes": volumes or []},
        "status": {"phase": phase, "nodeName": node,
                   "phaseTransitionTimestamps": [{"phase": phase, "phaseTransitionTimestamp": "2026-01-01T00:00:00Z"}]},
    }
    if finalizers:
        vmi["metadata"]["finalizers"] = finalizers
    if grace is not None:
        vmi["spec"]["terminationGracePeriodSeconds"] = grace
    if start_strategy:
        vmi["spec"]["startStrategy"] = start_strategy
    return vmi


async def get_vmi(store, name, namespace="default"):
    from shared.errors import NotFound
    try:
        return await store.get(VMIS, namespace, name)
    except NotFound:
        return None


def phase_of(vmi):
    return ((vmi or {}).get("status") or {}).get("phase")


def conditions_of(vmi):
    return {c["type"]: c for c in ((vmi or {}).get("status") or {}).get("conditions") or []}


def new_uid() -> str:
    return str(uuid.uuid4())
