"""``kubevirt.io/v1`` VirtualMachine: a VMI template plus a run strategy (kubevirt-api.md §4;
source: kubevirt.io/api core/v1 types.go)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.api.base import ApiStruct, Int64, Object, StrMap, describe
from shared.api.meta import Condition, ObjectMeta
from shared.api.vmi import VirtualMachineInstanceTemplateSpec

RUN_STRATEGIES: tuple[str, ...] = ("Always", "RerunOnFailure", "Manual", "Halted", "Once", "WaitAsReceiver")

RUN_STRATEGY_DOC = (
    "Desired run state of the VirtualMachine. One of: Always (a VMI is always kept running, "
    "restarted whenever it stops), RerunOnFailure (restarted only after a failure), Manual "
    "(started and stopped only through the start/stop/restart subresources), Halted (no VMI; "
    "the VM is stopped), Once (run once, never restarted). Mutually exclusive with the "
    "deprecated spec.running; one of the two must be set."
)


class DataVolumeTemplateSpec(ApiStruct, kw_only=True):
    """A CDI DataVolume created for the VM (its spec is kept as given)."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: Object | None = None
    status: Object | None = None


class InstancetypeMatcher(ApiStruct, kw_only=True):
    """Reference to a (cluster) instancetype."""

    name: str | None = None
    kind: str | None = None
    revision_name: str | None = None
    infer_from_volume: str | None = None
    infer_from_volume_failure_policy: str | None = None


class PreferenceMatcher(ApiStruct, kw_only=True):
    """Reference to a (cluster) preference."""

    name: str | None = None
    kind: str | None = None
    revision_name: str | None = None
    infer_from_volume: str | None = None
    infer_from_volume_failure_policy: str | None = None


class VirtualMachineSpec(ApiStruct, kw_only=True):
    """Desired state of a VirtualMachine."""

    running: Annotated[
        bool | None, describe("Deprecated: use runStrategy. true = Always, false = Halted.")
    ] = None
    run_strategy: Annotated[str | None, describe(RUN_STRATEGY_DOC)] = None
    instancetype: InstancetypeMatcher | None = None
    preference: PreferenceMatcher | None = None
    template: Annotated[
        VirtualMachineInstanceTemplateSpec,
        describe("The VirtualMachineInstance this VM creates: metadata and spec."),
    ]
    data_volume_templates: list[DataVolumeTemplateSpec] | None = None
    update_volumes_strategy: str | None = None


class VirtualMachineStateChangeRequest(ApiStruct, kw_only=True):
    """A pending Start or Stop request (``uid`` pins the VMI a Stop is for)."""

    action: str
    data: StrMap | None = None
    uid: str | None = None


class VirtualMachineStartFailure(ApiStruct, kw_only=True):
    """Crash-loop bookkeeping."""

    consecutive_fail_count: Int64 | None = None
    last_failed_vmi_uid: str | None = msgspec.field(default=None, name="lastFailedVMIUID")
    retry_after_timestamp: str | None = None


class VolumeSnapshotStatus(ApiStruct, kw_only=True):
    """Whether a volume can be snapshotted."""

    name: str
    enabled: bool
    reason: str | None = None


class VirtualMachineStatus(ApiStruct, kw_only=True):
    """Observed state of a VirtualMachine."""

    snapshot_in_progress: str | None = None
    restore_in_progress: str | None = None
    created: bool | None = None
    ready: bool | None = None
    printable_status: Annotated[
        str | None, describe("Human readable status: Stopped, Starting, Running, ...")
    ] = None
    conditions: list[Condition] | None = None
    state_change_requests: list[VirtualMachineStateChangeRequest] | None = None
    volume_requests: list[Object] | None = None
    volume_snapshot_statuses: list[VolumeSnapshotStatus] | None = None
    start_failure: VirtualMachineStartFailure | None = None
    memory_dump_request: Object | None = None
    observed_generation: Int64 | None = None
    desired_generation: Int64 | None = None
    run_strategy: str | None = None
    volume_update_state: Object | None = None
    instancetype_ref: Object | None = None
    preference_ref: Object | None = None
    changed_block_tracking: Object | None = None


class VirtualMachine(ApiStruct, kw_only=True):
    """A virtual machine: a VMI template kept running (or not) per its run strategy."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: VirtualMachineSpec
    status: VirtualMachineStatus | None = None
