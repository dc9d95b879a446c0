"""Defaulting and validation of objects the controllers create (VMIs, pool VMs).

In KubeVirt a controller-created object passes the API server's mutating and validating
webhooks like any other. Here controllers write to the store directly, so they run the same
pure admission function as virt-api (:func:`shared.admission.admit`) themselves. Metadata and
status set by the controller (e.g. a VMI's phase Pending and its timestamp) are kept as given.
"""

from __future__ import annotations

from typing import Any

from shared.admission import admit
from shared.api.resources import find_resource


def apply_create_admission(group: str, version: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` defaulted and validated as on a CREATE through virt-api.

    Raises ``shared.errors.Invalid`` (or BadRequest) when it is not a valid object, and
    ``shared.errors.NotFound`` when ``group``/``version``/``plural`` names no known resource.
    """
    result = admit(find_resource(group, version, plural), obj, operation="CREATE", field_validation="Ignore")
    admitted = dict(result.obj)
    admitted["metadata"] = obj["metadata"]
    if "status" in obj:
        admitted["status"] = obj["status"]
    return admitted


def apply_vmi_admission(vmi: dict[str, Any]) -> dict[str, Any]:
    """:func:`apply_create_admission` for a ``kubevirt.io/v1`` VirtualMachineInstance."""
    return apply_create_admission("kubevirt.io", "v1", "virtualmachineinstances", vmi)
