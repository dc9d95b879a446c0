"""The registry of served resources: group, version, kind, names, scope and top-level type
(source: KubeVirt's CRDs in pkg/virt-operator/resource/generate/components/crds.go,
kubevirt-api.md §1; Kubernetes' core/coordination groups for Node and Lease).

Everything that routes, stores or describes a resource (virt-api discovery and handlers, the
store's bucket names, OpenAPI, printers) looks it up here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.api.kubevirt import KubeVirt
from shared.api.lease import Lease
from shared.api.migration import VirtualMachineInstanceMigration
from shared.api.migrationpolicy import MigrationPolicy
from shared.api.node import Node
from shared.api.pool import VirtualMachinePool
from shared.api.replicaset import VirtualMachineInstanceReplicaSet
from shared.api.snapshot import VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent
from shared.api.storage import PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.errors import NotFound


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource. ``group`` is "" for the core group; ``plural`` names the URL
    segment and the store bucket; ``type`` is the top-level msgspec Struct (or None)."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    list_kind: str
    categories: tuple[str, ...]
    type: type | None
    subresources: tuple[str, ...]

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group ("v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status_subresource(self) -> bool:
        """Whether ``/status`` is a separate subresource (then the main resource keeps status)."""
        return "status" in self.subresources


VIRTUAL_MACHINE = ResourceInfo(
    group="kubevirt.io",
    version="v1",
    kind="VirtualMachine",
    plural="virtualmachines",
    singular="virtualmachine",
    short_names=("vm", "vms"),
    namespaced=True,
    list_kind="VirtualMachineList",
    categories=("all",),
    type=VirtualMachine,
    subresources=("status", "start", "stop", "restart", "migrate"),
)
VIRTUAL_MACHINE_INSTANCE = ResourceInfo(
    group="kubevirt.io",
    version="v1",
    kind="VirtualMachineInstance",
    plural="virtualmachineinstances",
    singular="virtualmachineinstance",
    short_names=("vmi", "vmis"),
    namespaced=True,
    list_kind="VirtualMachineInstanceList",
    categories=("all",),
    type=VirtualMachineInstance,
    subresources=("pause", "unpause", "console", "vnc", "softreboot", "guestosinfo", "freeze", "unfreeze"),
)
VIRTUAL_MACHINE_INSTANCE_REPLICA_SET = ResourceInfo(
    group="kubevirt.io",
    version="v1",
    kind="VirtualMachineInstanceReplicaSet",
    plural="virtualmachineinstancereplicasets",
    singular="virtualmachineinstancereplicaset",
    short_names=("vmirs", "vmirss"),
    namespaced=True,
    list_kind="VirtualMachineInstanceReplicaSetList",
    categories=("all",),
    type=VirtualMachineInstanceReplicaSet,
    subresources=("status", "scale"),
)
VIRTUAL_MACHINE_INSTANCE_MIGRATION = ResourceInfo(
    group="kubevirt.io",
    version="v1",
    kind="VirtualMachineInstanceMigration",
    plural="virtualmachineinstancemigrations",
    singular="virtualmachineinstancemigration",
    short_names=("vmim", "vmims"),
    namespaced=True,
    list_kind="VirtualMachineInstanceMigrationList",
    categories=("all",),
    type=VirtualMachineInstanceMigration,
    subresources=("status",),
)
VIRTUAL_MACHINE_POOL = ResourceInfo(
    group="pool.kubevirt.io",
    version="v1beta1",
    kind="VirtualMachinePool",
    plural="virtualmachinepools",
    singular="virtualmachinepool",
    short_names=("vmpool", "vmpools"),
    namespaced=True,
    list_kind="VirtualMachinePoolList",
    categories=("all",),
    type=VirtualMachinePool,
    subresources=("status", "scale"),
)
MIGRATION_POLICY = ResourceInfo(
    group="migrations.kubevirt.io",
    version="v1alpha1",
    kind="MigrationPolicy",
    plural="migrationpolicies",
    singular="migrationpolicy",
    short_names=(),
    namespaced=False,
    list_kind="MigrationPolicyList",
    categories=("all",),
    type=MigrationPolicy,
    subresources=("status",),
)
KUBEVIRT = ResourceInfo(
    group="kubevirt.io",
    version="v1",
    kind="KubeVirt",
    plural="kubevirts",
    singular="kubevirt",
    short_names=("kv", "kvs"),
    namespaced=True,
    list_kind="KubeVirtList",
    categories=("all",),
    type=KubeVirt,
    subresources=("status",),
)
NODE = ResourceInfo(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    singular="node",
    short_names=("no",),
    namespaced=False,
    list_kind="NodeList",
    categories=(),
    type=Node,
    subresources=("status",),
)
LEASE = ResourceInfo(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    singular="lease",
    short_names=(),
    namespaced=True,
    list_kind="LeaseList",
    categories=(),
    type=Lease,
    subresources=(),
)

VIRTUAL_MACHINE_SNAPSHOT = ResourceInfo(
    group="snapshot.kubevirt.io",
    version="v1beta1",
    kind="VirtualMachineSnapshot",
    plural="virtualmachinesnapshots",
    singular="virtualmachinesnapshot",
    short_names=("vmsnapshot", "vmsnapshots"),
    namespaced=True,
    list_kind="VirtualMachineSnapshotList",
    categories=("all",),
    type=VirtualMachineSnapshot,
    subresources=("status",),
)
VIRTUAL_MACHINE_SNAPSHOT_CONTENT = ResourceInfo(
    group="snapshot.kubevirt.io",
    version="v1beta1",
    kind="VirtualMachineSnapshotContent",
    plural="virtualmachinesnapshotcontents",
    singular="virtualmachinesnapshotcontent",
    short_names=("vmsnapshotcontent", "vmsnapshotcontents"),
    namespaced=True,
    list_kind="VirtualMachineSnapshotContentList",
    categories=("all",),
    type=VirtualMachineSnapshotContent,
    subresources=("status",),
)
VIRTUAL_MACHINE_RESTORE = ResourceInfo(
    group="snapshot.kubevirt.io",
    version="v1beta1",
    kind="VirtualMachineRestore",
    plural="virtualmachinerestores",
    singular="virtualmachinerestore",
    short_names=("vmrestore", "vmrestores"),
    namespaced=True,
    list_kind="VirtualMachineRestoreList",
    categories=("all",),
    type=VirtualMachineRestore,
    subresources=("status",),
)
PERSISTENT_VOLUME_CLAIM = ResourceInfo(
    group="",
    version="v1",
    kind="PersistentVolumeClaim",
    plural="persistentvolumeclaims",
    singular="persistentvolumeclaim",
    short_names=("pvc",),
    namespaced=True,
    list_kind="PersistentVolumeClaimList",
    categories=(),
    type=PersistentVolumeClaim,
    subresources=("status",),
)

RESOURCES: tuple[ResourceInfo, ...] = (
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_INSTANCE,
    VIRTUAL_MACHINE_INSTANCE_REPLICA_SET,
    VIRTUAL_MACHINE_INSTANCE_MIGRATION,
    VIRTUAL_MACHINE_POOL,
    MIGRATION_POLICY,
    KUBEVIRT,
    NODE,
    LEASE,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_CONTENT,
    VIRTUAL_MACHINE_RESTORE,
    PERSISTENT_VOLUME_CLAIM,
)

_BY_PLURAL = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def find_resource(group: str, version: str, plural: str) -> ResourceInfo:
    """The resource served at ``/apis/<group>/<version>/.../<plural>`` (group "" = ``/api/v1``).

    Raises :class:`shared.errors.NotFound` for anything not in :data:`RESOURCES`."""
    try:
        return _BY_PLURAL[(group, version, plural)]
    except KeyError:
        gv = f"{group}/{version}" if group else version
        raise NotFound(f'the server could not find the requested resource "{plural}" in {gv}') from None


def resource_for_kind(api_version: str, kind: str) -> ResourceInfo:
    """The resource whose objects carry ``apiVersion``/``kind``.

    Raises :class:`shared.errors.NotFound` (Kubernetes: 'no matches for kind ... in version ...')."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise NotFound(f'no matches for kind "{kind}" in version "{api_version}"') from None
