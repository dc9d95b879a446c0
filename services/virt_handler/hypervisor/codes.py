"""libvirt's numeric codes in KubeVirt's words: domain states and reasons, lifecycle events,
error numbers -> ``HypervisorError`` reasons (``pkg/virt-launcher/virtwrap/api/types.go``,
``libvirt-domain.h``, ``virterror.h``)."""

from __future__ import annotations

import libvirt

from services.virt_handler.hypervisor_types import DomainNotFound, HypervisorError

# libvirt state / reason codes -> KubeVirt names (virtwrap/api/types.go, libvirt-domain.h).
DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "NoState", libvirt.VIR_DOMAIN_RUNNING: "Running",
    libvirt.VIR_DOMAIN_BLOCKED: "Blocked", libvirt.VIR_DOMAIN_PAUSED: "Paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "Shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "Shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "Crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "PMSuspended",
}
STATE_REASONS = {
    libvirt.VIR_DOMAIN_RUNNING: {0: "Unknown", 1: "Booted", 2: "Migrated", 3: "Restored", 4: "FromSnapshot",
                                 5: "Unpaused", 6: "MigrationCanceled", 7: "SaveCanceled", 8: "WakeUp",
                                 9: "Crashed", 10: "PostCopy"},
    libvirt.VIR_DOMAIN_PAUSED: {0: "Unknown", 1: "User", 2: "Migration", 3: "Save", 4: "Dump", 5: "IOError",
                                6: "Watchdog", 7: "FromSnapshot", 8: "ShuttingDown", 9: "Snapshot",
                                10: "Crashed", 11: "StartingUp", 12: "PostCopy", 13: "PostCopyFailed"},
    libvirt.VIR_DOMAIN_SHUTDOWN: {0: "Unknown", 1: "User"},
    libvirt.VIR_DOMAIN_SHUTOFF: {0: "Unknown", 1: "Shutdown", 2: "Destroyed", 3: "Crashed", 4: "Migrated",
                                 5: "Saved", 6: "Failed", 7: "FromSnapshot", 8: "Daemon"},
    libvirt.VIR_DOMAIN_CRASHED: {0: "Unknown", 1: "Panicked"},
}
LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "Defined", libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "Undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "Started", libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "Suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "Resumed", libvirt.VIR_DOMAIN_EVENT_STOPPED: "Stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "Shutdown", libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "PMSuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "Crashed",
}
STOPPED_DETAILS = {0: "Shutdown", 1: "Destroyed", 2: "Crashed", 3: "Migrated", 4: "Saved", 5: "Failed",
                   6: "FromSnapshot"}



_ERROR_REASONS = {
    libvirt.VIR_ERR_NO_DOMAIN: "NotFound",
    libvirt.VIR_ERR_OPERATION_INVALID: "OperationInvalid",
    libvirt.VIR_ERR_XML_ERROR: "InvalidDomain",
    libvirt.VIR_ERR_XML_DETAIL: "InvalidDomain",
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: "InvalidDomain",
    libvirt.VIR_ERR_NO_SUPPORT: "Unsupported",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "Unsupported",
    libvirt.VIR_ERR_INVALID_ARG: "Unsupported",
    libvirt.VIR_ERR_DOM_EXIST: "AlreadyExists",
    libvirt.VIR_ERR_OPERATION_TIMEOUT: "Timeout",
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: "AgentUnresponsive",
    libvirt.VIR_ERR_RPC: "ConnectionLost",
    libvirt.VIR_ERR_SYSTEM_ERROR: "ConnectionLost",
    libvirt.VIR_ERR_NO_CONNECT: "ConnectionLost",
    libvirt.VIR_ERR_INVALID_CONN: "ConnectionLost",
}


def map_libvirt_error(err: libvirt.libvirtError) -> HypervisorError:
    """Translate a ``libvirtError`` into the handler's own error tree (see ``HypervisorError``)."""
    code = err.get_error_code()
    message = err.get_error_message() or str(err)
    reason = _ERROR_REASONS.get(code, "Failed")
    if reason == "NotFound":
        return DomainNotFound(message, code=code)
    return HypervisorError(reason, message, code=code, retryable=reason in ("ConnectionLost", "Timeout"))

