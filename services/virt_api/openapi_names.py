"""Names in virt-api's OpenAPI documents: definition names and references.

Definitions are named like Kubernetes' (``io.kubevirt.v1.VirtualMachine``,
``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``): the prefix follows the module of the
msgspec Struct in :mod:`shared.api` (KubeVirt's own ``Condition`` keeps KubeVirt's prefix).
"""

from __future__ import annotations

from shared.api.resources import ResourceInfo

V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"

MODULE_PREFIXES = {
    "shared.api.meta": META,
    "shared.api.core": "io.k8s.api.core.v1",
    "shared.api.node": "io.k8s.api.core.v1",
    "shared.api.lease": "io.k8s.api.coordination.v1",
    "shared.api.pool": "io.kubevirt.pool.v1beta1",
    "shared.api.migrationpolicy": "io.kubevirt.migrations.v1alpha1",
    "shared.api.snapshot": "io.kubevirt.snapshot.v1beta1",
    "shared.api.storage": "io.k8s.api.core.v1",
}
KUBEVIRT_PREFIX = "io.kubevirt.v1"
KUBEVIRT_META_CLASSES = {"Condition"}  # KubeVirt's own condition shape, not meta/v1's


def definition_name(cls: type) -> str:
    """The OpenAPI definition name of an API Struct class."""
    if cls.__module__ == "shared.api.meta" and cls.__name__ in KUBEVIRT_META_CLASSES:
        return f"{KUBEVIRT_PREFIX}.{cls.__name__}"
    return f"{MODULE_PREFIXES.get(cls.__module__, KUBEVIRT_PREFIX)}.{cls.__name__}"


def compute_gvk(resource: ResourceInfo, kind: str | None = None) -> dict[str, str]:
    """``{"group", "kind", "version"}`` of ``resource`` (or of its ``kind``, e.g. its List)."""
    return {"group": resource.group, "kind": kind or resource.kind, "version": resource.version}
