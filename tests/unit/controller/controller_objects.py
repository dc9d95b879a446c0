"""Typed test inputs for the controller's pure decisions: JSON-ready dicts (as the tests write
them) converted into the :mod:`shared.api` Structs the decisions take, with the fields the types
require (a VMI's ``spec.domain``, a VM's ``spec.template``) filled in when a test leaves them out.
``as_dict`` turns a result back into its JSON form so the tests assert on KubeVirt's field names."""
from __future__ import annotations

from typing import Any

import msgspec

from shared.api.pool import VirtualMachinePool
from shared.api.vm import VirtualMachine, VirtualMachineStartFailure, VirtualMachineStateChangeRequest, \
    VirtualMachineStatus
from shared.api.vmi import VirtualMachineInstance


def as_dict(value: Any) -> Any:
    """A Struct (or a list of them) as JSON-ready builtins (None fields omitted)."""
    return msgspec.to_builtins(value)


def vmi(obj: dict | None) -> VirtualMachineInstance | None:
    if obj is None:
        return None
    spec = dict(obj.get("spec") or {})
    spec.setdefault("domain", {})
    return msgspec.convert({**obj, "spec": spec}, VirtualMachineInstance)


def vm(obj: dict) -> VirtualMachine:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("template", {})
    return msgspec.convert({**obj, "spec": spec}, VirtualMachine)


def vm_status(status: dict | None) -> VirtualMachineStatus | None:
    return None if status is None else msgspec.convert(status, VirtualMachineStatus)


def requests(items: list[dict] | None) -> list[VirtualMachineStateChangeRequest] | None:
    return None if items is None else msgspec.convert(items, list[VirtualMachineStateChangeRequest])


def start_failure(failure: dict | None) -> VirtualMachineStartFailure | None:
    return None if failure is None else msgspec.convert(failure, VirtualMachineStartFailure)


def pool(obj: dict) -> VirtualMachinePool:
    return msgspec.convert(obj, VirtualMachinePool)
