"""``status.printableStatus`` of a VirtualMachine (pure).

Source: ``kubevirt/kubevirt: pkg/virt-controller/watch/vm/vm.go`` (``setPrintableStatus`` and the
``isVirtualMachineStatus*`` predicates). The first matching entry of the precedence list wins:

 1. Terminating        VM has a deletionTimestamp
 2. Stopping           VMI exists, not final, being deleted (or a delete is expected)
 3. Migrating          VMI is migrating
 4. Paused             VMI Running with condition Paused=True
 5. Running            VMI Running
 6. ErrorPvcNotFound   VMI Synchronized=False reason FailedPvcNotFound
 7. ErrorUnschedulable VMI PodScheduled=False reason Unschedulable
 8. ErrImagePull       VMI Synchronized=False reason ErrImagePull
 9. ImagePullBackOff   VMI Synchronized=False reason ImagePullBackOff
10. Starting           VMI unprocessed/Scheduling/Scheduled, or no VMI and a create is expected
11. CrashLoopBackOff   no live VMI, startFailure count > 0, strategy Always/RerunOnFailure/Once
12. Stopped            VMI final, or no VMI and no create expected
13. Unknown            anything else (e.g. VMI phase Unknown)

The DataVolume-based statuses (DataVolumeError, Provisioning, WaitingForVolumeBinding) and
WaitingForReceiver need DataVolume objects and decentralized migration, which this project does
not have yet; they never match here.
"""

from __future__ import annotations

from services.virt_controller import phases
from services.virt_controller.backoff import BACKOFF_RUN_STRATEGIES
from services.virt_controller.conditions import has_condition
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import (
    ConditionStatus,
    ConditionType,
    Phase,
    PrintableStatus,
    Reason,
)

FAILED_PVC_NOT_FOUND = "FailedPvcNotFound"


def _has(vmi: VirtualMachineInstance, ctype: str, status: str, reason: str | None = None) -> bool:
    return has_condition(vmi.status.conditions if vmi.status is not None else None, ctype, status, reason)


def _synchronized_false_with(vmi: VirtualMachineInstance, reason: str) -> bool:
    return _has(vmi, ConditionType.SYNCHRONIZED, ConditionStatus.FALSE, reason)


def _fail_count(vm: VirtualMachine) -> int:
    failure = vm.status.start_failure if vm.status is not None else None
    return int((failure.consecutive_fail_count if failure is not None else None) or 0)


def compute_printable_status(vm: VirtualMachine, vmi: VirtualMachineInstance | None, run_strategy: str,
                             *, start_expected: bool = False, stop_expected: bool = False) -> PrintableStatus:
    """The printable status for ``vm`` whose VMI is ``vmi`` (None when absent).

    ``start_expected``/``stop_expected`` say the controller has just asked for a create/delete
    it has not yet seen in its cache (KubeVirt's expectations).
    """
    if phases.is_marked_for_deletion(vm):
        return PrintableStatus.TERMINATING
    live = vmi is not None and not phases.is_final(vmi)
    if live and (phases.is_marked_for_deletion(vmi) or stop_expected):
        return PrintableStatus.STOPPING
    if vmi is not None:
        if phases.is_migrating(vmi):
            return PrintableStatus.MIGRATING
        if phases.phase_of(vmi) == Phase.RUNNING:
            paused = _has(vmi, ConditionType.PAUSED, ConditionStatus.TRUE)
            return PrintableStatus.PAUSED if paused else PrintableStatus.RUNNING
        if _synchronized_false_with(vmi, FAILED_PVC_NOT_FOUND):
            return PrintableStatus.ERROR_PVC_NOT_FOUND
        if _has(vmi, ConditionType.POD_SCHEDULED, ConditionStatus.FALSE, Reason.UNSCHEDULABLE):
            return PrintableStatus.ERROR_UNSCHEDULABLE
        if _synchronized_false_with(vmi, Reason.ERR_IMAGE_PULL):
            return PrintableStatus.ERR_IMAGE_PULL
        if _synchronized_false_with(vmi, Reason.IMAGE_PULL_BACK_OFF):
            return PrintableStatus.IMAGE_PULL_BACK_OFF
    if vmi is None:
        if start_expected:
            return PrintableStatus.STARTING
    elif phases.is_unprocessed(vmi) or phases.phase_of(vmi) in (Phase.SCHEDULING, Phase.SCHEDULED):
        return PrintableStatus.STARTING
    if not live and not start_expected and _fail_count(vm) > 0 and run_strategy in BACKOFF_RUN_STRATEGIES:
        return PrintableStatus.CRASH_LOOP_BACK_OFF
    if vmi is not None:
        if phases.is_final(vmi):
            return PrintableStatus.STOPPED
    elif not start_expected:
        return PrintableStatus.STOPPED
    return PrintableStatus.UNKNOWN
