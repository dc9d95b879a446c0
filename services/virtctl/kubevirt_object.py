"""The installation's ``KubeVirt`` object, ``kubevirt/kubevirt``: ``virtctl up`` creates it once,
as KubeVirt's operator deployment has one, so that the migration settings have their Kubernetes
place (``kubectl edit kubevirt kubevirt -n kubevirt``; virt-migration reads
``spec.configuration.migrations`` at run time).

It is created only when no KubeVirt object exists at all, and never rewritten afterwards: a
user's edits stay. Its ``status.phase`` is ``Deployed`` (what KubeVirt's operator reports for a
running installation) once virt-api is up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.virtctl.client import ApiClient, resource_path
from shared import errors
from shared.api.resources import KUBEVIRT

NAMESPACE = "kubevirt"
NAME = "kubevirt"
DEPLOYED = "Deployed"


def compute_kubevirt_object() -> dict[str, Any]:
    """The object ``up`` creates: every migration setting left to its default (KubeVirt's)."""
    return {"apiVersion": KUBEVIRT.api_version, "kind": KUBEVIRT.kind,
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"configuration": {"migrations": {}}}}


async def apply_kubevirt_object(kubeconfig: Path) -> str:
    """Create ``kubevirt/kubevirt`` with status phase Deployed unless a KubeVirt object exists;
    returns what was done, one line (``kubevirt/kubevirt created`` or ``... unchanged``)."""
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        existing = (await api.get(resource_path(KUBEVIRT.group, KUBEVIRT.version, KUBEVIRT.plural)))["items"]
        if existing:
            meta = existing[0]["metadata"]
            return f"{meta.get('namespace')}/{meta['name']} unchanged"
        collection = resource_path(KUBEVIRT.group, KUBEVIRT.version, KUBEVIRT.plural, NAMESPACE)
        try:
            created = await api.post(collection, compute_kubevirt_object())
        except errors.ApiError as err:
            if err.code == 400 or isinstance(err, errors.AlreadyExists):  # made meanwhile by someone else
                return f"{NAMESPACE}/{NAME} unchanged"
            raise
        created["status"] = {"phase": DEPLOYED}
        await api.put(f"{collection}/{NAME}/status", created)
        return (f"{NAMESPACE}/{NAME} created (migration settings: "
                f"kubectl edit kubevirt {NAME} -n {NAMESPACE})")
