"""``kubevirt.io/v1`` VirtualMachineInstanceReplicaSet: N VMIs from one template
(kubevirt-api.md §1)."""

from __future__ import annotations

from shared.api.base import ApiStruct, Int32
from shared.api.meta import Condition, LabelSelector, ObjectMeta
from shared.api.vmi import VirtualMachineInstanceTemplateSpec


class VirtualMachineInstanceReplicaSetSpec(ApiStruct, kw_only=True):
    """``replicas`` (default 1) VMIs matching ``selector`` from ``template``."""

    replicas: Int32 | None = None
    selector: LabelSelector
    template: VirtualMachineInstanceTemplateSpec
    paused: bool | None = None


class VirtualMachineInstanceReplicaSetStatus(ApiStruct, kw_only=True):
    """Current and ready replica counts."""

    replicas: Int32 | None = None
    ready_replicas: Int32 | None = None
    conditions: list[Condition] | None = None
    label_selector: str | None = None


class VirtualMachineInstanceReplicaSet(ApiStruct, kw_only=True):
    """Keeps a number of identical VMIs running."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineInstanceReplicaSetSpec
    status: VirtualMachineInstanceReplicaSetStatus | None = None
