"""The host's libvirt around an embedded installation: its daemons and its guests.

Owns starting ``virtlogd``/``libvirtd`` when the handler needs them and they are not running
(shared with other installations and test runs: ``down`` stops them only when this
installation was their last user and a user had started them), and
stopping the installation's guests on ``down``. Guests are stopped by the handler's own tool
(``python -m services.virt_handler.guest_cleanup``, a process: virtctl imports neither libvirt
nor another service): ACPI, destroy after a grace period, undefine, remove the VMI directory.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from services.virtctl.layout import Layout

#: The handler's guest clean-up command (see :mod:`services.virt_handler.guest_cleanup`).
GUEST_CLEANUP_MODULE = "services.virt_handler.guest_cleanup"


def compute_daemon_holder(layout: Layout) -> str:
    """The name this installation registers under with the shared system daemons
    (:func:`shared.libvirtd_users.apply_shared_system_daemons`): one per state directory."""
    return "installation-" + hashlib.sha256(str(layout.state_dir.resolve()).encode()).hexdigest()[:16]


def apply_libvirt_daemons(layout: Layout) -> list[str]:
    """Start ``virtlogd``/``libvirtd`` when they are not running and register this installation
    as one of their users (``shared.libvirtd``: the last user to leave stops what users started,
    so ``down`` never takes libvirt from another installation or a test run still using it).
    Returns the names started now. Raises ``shared.libvirtd.LibvirtdError`` with a readable
    message."""
    from shared import libvirtd_users

    state = libvirtd_users.apply_shared_system_daemons(holder=compute_daemon_holder(layout),
                                                 holder_while=layout.state_dir / "installation.json")
    return list(state.started)


def apply_stop_libvirt_daemons(layout: Layout, timeout: float = 15.0) -> list[str]:
    """Unregister this installation from the system daemons; stops them (returns their names) only
    when it was their last user and users had started them."""
    from shared import libvirtd_users

    return libvirtd_users.apply_leave_shared_system_daemons(timeout, holder=compute_daemon_holder(layout))


def apply_stop_guests(layout: Layout, grace: float = 20.0) -> list[str]:
    """Shut down the guests of this installation and remove their domains and files.

    A guest is this installation's when its domain carries a VMI uid (KubeVirt metadata) whose
    directory exists under ``<state>/virt-handler/vmis``; other domains on the same libvirt are
    never touched. ACPI power button first, destroy after ``grace`` seconds (the demo guest powers
    off within a second or two), then undefine and remove the VMI directory (overlay, ISOs,
    console log). Returns the domain names stopped; empty when libvirt is unreachable."""
    vmis_dir = layout.handler_dir / "vmis"
    if not vmis_dir.is_dir() or not any(vmis_dir.iterdir()):
        return []
    return run_guest_cleanup(layout.libvirt_uri, "--vmis-dir", str(vmis_dir), "--grace", str(grace))


def apply_destroy_all_guests(uri: str) -> list[str]:
    """Destroy and undefine every domain on ``uri`` (a node's private libvirt); their names."""
    return run_guest_cleanup(uri, "--all")


def run_guest_cleanup(uri: str, *args: str) -> list[str]:
    """Run the handler's guest clean-up on ``uri`` with ``args``; the domain names it handled.
    Raises RuntimeError with its last error line when it fails."""
    proc = subprocess.run([sys.executable, "-m", GUEST_CLEANUP_MODULE, "--libvirt-uri", uri, *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"stopping the guests on {uri} failed: {lines[-1] if lines else proc.returncode}")
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    return [str(n) for n in names]
