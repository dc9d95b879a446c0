"""Small builders of object dicts for the store tests."""

from __future__ import annotations

from typing import Any


def make_vm(name: str | None = "vm1", namespace: str = "default", *, labels: dict[str, str] | None = None,
            running: bool = False, **meta: Any) -> dict[str, Any]:
    """A minimal kubevirt.io/v1 VirtualMachine dict (only what the store looks at)."""
    metadata: dict[str, Any] = {"namespace": namespace, **meta}
    if name is not None:
        metadata["name"] = name
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": metadata,
        "spec": {"running": running, "template": {"spec": {"domain": {"devices": {}}}}},
    }


def make_vmi_owned_by(owner: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A VirtualMachineInstance whose ownerReference points at ``owner`` (as virt-controller makes it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name or meta["name"],
            "namespace": meta["namespace"],
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1", "kind": owner["kind"], "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {"domain": {"devices": {}}},
    }
