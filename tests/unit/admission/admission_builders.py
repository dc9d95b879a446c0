"""Small builders for admission tests: ``make_vmi(with_disk(...), with_volume(...))``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Change = Callable[[dict[str, Any]], None]


def make_vmi_spec(*changes: Change) -> dict[str, Any]:
    """A valid VMI spec (one virtio containerDisk, 128Mi), then ``changes`` applied in order."""
    spec: dict[str, Any] = {
        "domain": {
            "memory": {"guest": "128Mi"},
            "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
        },
        "volumes": [{"name": "root", "containerDisk": {"image": "example.org/guest:1"}}],
    }
    for change in changes:
        change(spec)
    return spec


def make_vmi(*changes: Change, name: str = "guest") -> dict[str, Any]:
    """A VMI object around :func:`make_vmi_spec`."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "default"},
        "spec": make_vmi_spec(*changes),
    }


def make_vm(*changes: Change, run_strategy: str | None = "Halted", name: str = "vm") -> dict[str, Any]:
    """A VM object whose template spec is :func:`make_vmi_spec` with ``changes``."""
    spec: dict[str, Any] = {"template": {"metadata": {"labels": {"app": name}}, "spec": make_vmi_spec(*changes)}}
    if run_strategy is not None:
        spec["runStrategy"] = run_strategy
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


def with_disk(disk: dict[str, Any]) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"].setdefault("disks", []).append(copy.deepcopy(disk))
    return change


def with_volume(volume: dict[str, Any]) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec.setdefault("volumes", []).append(copy.deepcopy(volume))
    return change


def with_disk_and_volume(name: str, target: dict[str, Any], source: dict[str, Any]) -> Change:
    def change(spec: dict[str, Any]) -> None:
        with_disk({"name": name, **target})(spec)
        with_volume({"name": name, **source})(spec)
    return change


def with_domain(**values: Any) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec["domain"].update(copy.deepcopy(values))
    return change


def with_devices(**values: Any) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec["domain"]["devices"].update(copy.deepcopy(values))
    return change


def with_spec(**values: Any) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec.update(copy.deepcopy(values))
    return change


def with_pod_network(binding: str = "masquerade", **interface: Any) -> Change:
    def change(spec: dict[str, Any]) -> None:
        spec["networks"] = [{"name": "default", "pod": {}}]
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", binding: {}, **interface}]
    return change


def without(*path: str | int) -> Change:
    def change(spec: dict[str, Any]) -> None:
        target: Any = spec
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change
