"""``pool.kubevirt.io/v1beta1`` VirtualMachinePool: N VMs from one VM template
(kubevirt-api.md §1)."""

from __future__ import annotations

from shared.api.base import ApiStruct, Int32, IntOrString, Object, UInt32
from shared.api.meta import Condition, LabelSelector, ObjectMeta
from shared.api.vm import VirtualMachineSpec


class VirtualMachineTemplateSpec(ApiStruct, kw_only=True):
    """Metadata and spec of the VMs a pool creates."""

    metadata: ObjectMeta | None = None
    spec: VirtualMachineSpec | None = None


class VirtualMachinePoolSpec(ApiStruct, kw_only=True):
    """``replicas`` VMs matching ``selector`` from ``virtualMachineTemplate``."""

    replicas: Int32 | None = None
    selector: LabelSelector
    virtual_machine_template: VirtualMachineTemplateSpec
    paused: bool | None = None
    name_generation: Object | None = None
    max_unavailable: IntOrString | None = None
    scale_in_strategy: Object | None = None
    update_strategy: Object | None = None
    autohealing: Object | None = None
    start_up_failure_threshold: UInt32 | None = None
    min_failing_to_start_duration: str | None = None
    append_index_to_config_map_refs: bool | None = None
    append_index_to_secret_refs: bool | None = None


class VirtualMachinePoolStatus(ApiStruct, kw_only=True):
    """Current and ready replica counts."""

    replicas: Int32 | None = None
    ready_replicas: Int32 | None = None
    conditions: list[Condition] | None = None
    label_selector: str | None = None


class VirtualMachinePool(ApiStruct, kw_only=True):
    """Keeps a number of VirtualMachines from one template."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachinePoolSpec
    status: VirtualMachinePoolStatus | None = None
