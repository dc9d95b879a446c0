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

from typing import Any

from services.virt_controller import phases
from services.virt_controller.backoff import BACKOFF_RUN_STRATEGIES
from services.virt_controller.conditions import has_condition

TERMINATING = "Terminating"
STOPPING = "Stopping"
MIGRATING = "Migrating"
PAUSED = "Paused"
RUNNING = "Running"
ERROR_PVC_NOT_FOUND = "ErrorPvcNotFound"
ERROR_UNSCHEDULABLE = "ErrorUnschedulable"
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
STARTING = "Starting"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
STOPPED = "Stopped"
UNKNOWN = "Unknown"


def _synchronized_false_with(vmi: dict[str, Any], reason: str) -> bool:
    return has_condition(vmi, "Synchronized", "False", reason)


def compute_printable_status(vm: dict[str, Any], vmi: dict[str, Any] | None, run_strategy: str,
                             *, start_expected: bool = False, stop_expected: bool = False) -> str:
    """The printable status for ``vm`` whose VMI is ``vmi`` (None when absent).

    ``start_expected``/``stop_expected`` say the controller has just asked for a create/delete
    it has not yet seen in its cache (KubeVirt's expectations).
    """
    if phases.is_marked_for_deletion(vm):
        return TERMINATING
    live = vmi is not None and not phases.is_final(vmi)
    if live and (phases.is_marked_for_deletion(vmi) or stop_expected):
        return STOPPING
    if vmi is not None and phases.is_migrating(vmi):
        return MIGRATING
    if vmi is not None and phases.phase_of(vmi) == phases.RUNNING:
        return PAUSED if has_condition(vmi, "Paused", "True") else RUNNING
    if vmi is not None:
        if _synchronized_false_with(vmi, "FailedPvcNotFound"):
            return ERROR_PVC_NOT_FOUND
        if has_condition(vmi, "PodScheduled", "False", "Unschedulable"):
            return ERROR_UNSCHEDULABLE
        if _synchronized_false_with(vmi, ERR_IMAGE_PULL):
            return ERR_IMAGE_PULL
        if _synchronized_false_with(vmi, IMAGE_PULL_BACK_OFF):
            return IMAGE_PULL_BACK_OFF
    if vmi is None:
        if start_expected:
            return STARTING
    elif phases.is_unprocessed(vmi) or phases.phase_of(vmi) in (phases.SCHEDULING, phases.SCHEDULED):
        return STARTING
    if not live and not start_expected:
        failure = (vm.get("status") or {}).get("startFailure") or {}
        if int(failure.get("consecutiveFailCount") or 0) > 0 and run_strategy in BACKOFF_RUN_STRATEGIES:
            return CRASH_LOOP_BACK_OFF
    if vmi is not None:
        if phases.is_final(vmi):
            return STOPPED
    elif not start_expected:
        return STOPPED
    return UNKNOWN
