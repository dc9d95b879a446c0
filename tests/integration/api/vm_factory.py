"""Small builders of valid objects for virt-api integration tests."""

from __future__ import annotations

from typing import Any

GROUP, VERSION = "kubevirt.io", "v1"
VMS = "virtualmachines"
VMIS = "virtualmachineinstances"


def make_vm(name: str, *, run_strategy: str = "Halted", labels: dict[str, str] | None = None,
            memory: str = "64Mi") -> dict[str, Any]:
    """A minimal valid VirtualMachine (containerDisk root, given run strategy)."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {
            "runStrategy": run_strategy,
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {
                    "domain": {
                        "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                        "resources": {"requests": {"memory": memory}},
                    },
                    "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}}],
                },
            },
        },
    }


def make_vmi(name: str, *, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal valid VirtualMachineInstance, optionally owned (controller ref) by ``owner``."""
    vmi: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name},
        "spec": {
            "domain": {
                "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                "resources": {"requests": {"memory": "64Mi"}},
            },
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}}],
        },
    }
    if owner is not None:
        vmi["metadata"]["ownerReferences"] = [{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }]
    return vmi
