"""Defaulting and validation of VMIs the controllers create.

In KubeVirt a controller-created VMI passes the API server's mutating and validating webhooks
like any other. Here controllers write to the store directly, so they run virt-api's pure
admission function (``services.virt_api.admission.admit``) themselves. Status set by the
controller (phase Pending and its timestamp) is kept as given.
"""

from __future__ import annotations

from typing import Any


def apply_vmi_admission(vmi: dict[str, Any]) -> dict[str, Any]:
    """``vmi`` defaulted and validated as on a CREATE through virt-api.

    Raises ``shared.errors.Invalid`` (or BadRequest) when the template cannot make a valid VMI.
    Returns ``vmi`` unchanged when virt-api's admission package is not installed.
    """
    try:
        from services.virt_api.admission import admit
        from shared.api.resources import find_resource
    except ImportError:
        return vmi
    resource = find_resource("kubevirt.io", "v1", "virtualmachineinstances")
    result = admit(resource, vmi, operation="CREATE", field_validation="Ignore")
    admitted = dict(result.obj)
    admitted["metadata"] = vmi["metadata"]
    if "status" in vmi:
        admitted["status"] = vmi["status"]
    return admitted
