"""The embedded installation: which processes ``virtctl up`` starts, and how they are managed.

One name for what ``up`` / ``down`` / ``status`` and the tests use, split by concern:

* :mod:`services.virtctl.layout` - the state directory's layout and the chosen ports
  (:class:`Layout`, :func:`load_layout`);
* :mod:`services.virtctl.service_specs` - the processes as data (:data:`SERVICES`, in start
  order: nats-server, virt-api, virt-controller, scheduler-bridge, virt-handler), their health
  probes, and :func:`check_api_port_change`;
* :mod:`services.virtctl.processes` - starting a service detached, waiting until it is healthy,
  stopping only the process this installation started (pid record + live command line);
* :mod:`services.virtctl.host_libvirt` - the libvirt daemons the handler needs (started when
  missing, stopped on ``down`` only when ``up`` started them) and the installation's guests
  (shut down on ``down``, so nothing is orphaned; a later ``up`` finds their VMIs without a
  domain: the handler marks them Failed and the VM controller starts them again as the run
  strategy says, as after a node reboot in KubeVirt).

This module adds :func:`wipe` (``down --wipe``, of either kind of installation:
:mod:`services.virtctl.installation_kind`).
"""

from __future__ import annotations

import shutil

from services.virtctl.host_libvirt import (
    apply_destroy_all_guests,
    apply_libvirt_daemons,
    apply_stop_guests,
    apply_stop_libvirt_daemons,
)
from services.virtctl.installation_kind import compute_written_paths
from services.virtctl.layout import DEFAULT_API_PORT, DEFAULT_LIBVIRT_URI, Layout, load_layout
from services.virtctl.processes import (
    ProcessRecord,
    ServiceSpec,
    compute_log_failure,
    is_alive,
    is_our_process,
    launch,
    log_path,
    read_record,
    running_record,
    stays_up,
    stop,
    wait_healthy,
)
from services.virtctl.service_specs import (
    NATS_SERVER,
    SCHEDULER_BRIDGE,
    SERVICES,
    VIRT_API,
    VIRT_CONTROLLER,
    VIRT_HANDLER,
    check_api_port_change,
    is_http_ok,
    python_service,
)

__all__ = [
    "DEFAULT_API_PORT", "DEFAULT_LIBVIRT_URI", "NATS_SERVER", "SCHEDULER_BRIDGE", "SERVICES", "VIRT_API",
    "VIRT_CONTROLLER", "VIRT_HANDLER", "Layout", "ProcessRecord", "ServiceSpec", "apply_destroy_all_guests",
    "apply_libvirt_daemons", "apply_stop_guests", "apply_stop_libvirt_daemons", "check_api_port_change",
    "compute_log_failure", "is_alive", "is_http_ok", "is_our_process", "launch", "load_layout", "log_path",
    "python_service", "read_record", "running_record", "stays_up", "stop", "wait_healthy", "wipe",
]


def wipe(layout: Layout) -> list[str]:
    """Remove what either kind of installation wrote (data — claims' disks under ``pvcs/`` and
    volume copies under ``volume-snapshots/`` included —, TLS material, token, logs, records,
    kubeconfig, the hosts' and extra nodes' directories;
    :func:`services.virtctl.installation_kind.compute_written_paths`), never anything else in
    the state directory; the directory itself goes when left empty. Call after everything is
    stopped.

    Returns one line per path that could not be removed (``<path>: <error>``; empty when all went),
    so the caller never claims a wipe that left data behind.
    """
    failed: list[str] = []

    def _failed(_func: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        failed.append(f"{path}: {exc_info[1]}")

    directories, files = compute_written_paths(layout)
    for sub in directories:
        if sub.is_dir():
            shutil.rmtree(sub, onerror=_failed)
    for f in files:
        try:
            f.unlink(missing_ok=True)
        except OSError as exc:
            failed.append(f"{f}: {exc}")
    try:
        layout.state_dir.rmdir()
    except OSError:
        pass
    return failed
