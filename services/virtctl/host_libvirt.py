"""The host's libvirt around an embedded installation: its daemons and its guests.

Owns starting ``virtlogd``/``libvirtd`` when the handler needs them and they are not running
(recorded in ``run/libvirt/daemons.json`` so ``down`` stops only what ``up`` started), and
stopping the installation's guests on ``down``. Guests are stopped by the handler's own tool
(``python -m services.virt_handler.guest_cleanup``, a process: virtctl imports neither libvirt
nor another service): ACPI, destroy after a grace period, undefine, remove the VMI directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from services.virtctl.layout import Layout
from services.virtctl.processes import ProcessRecord, is_alive, is_our_process, send_signal

#: The handler's guest clean-up command (see :mod:`services.virt_handler.guest_cleanup`).
GUEST_CLEANUP_MODULE = "services.virt_handler.guest_cleanup"


def _daemons_record(layout: Layout) -> Path:
    return layout.run_dir / "libvirt" / "daemons.json"


def _read_daemon_records(layout: Layout) -> dict[str, ProcessRecord]:
    try:
        data = json.loads(_daemons_record(layout).read_text())
        return {name: ProcessRecord(int(r["pid"]), list(r["argv"])) for name, r in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def apply_libvirt_daemons(layout: Layout) -> list[str]:
    """Start ``virtlogd``/``libvirtd`` when they are not running (``shared.libvirtd``) and add
    the ones started here to ``run/libvirt/daemons.json`` (pid + command line) so that
    :func:`apply_stop_libvirt_daemons` stops exactly those. Returns the names started now.
    Raises ``shared.libvirtd.LibvirtdError`` with a readable message."""
    from shared import libvirtd

    state = libvirtd.apply_system_daemons()
    records = {name: r for name, r in _read_daemon_records(layout).items() if is_our_process(r)}
    for name in state.started:
        pid = state.pids[name]
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
        records[name] = ProcessRecord(pid, argv)
    _daemons_record(layout).parent.mkdir(parents=True, exist_ok=True)
    _daemons_record(layout).write_text(json.dumps({n: asdict(r) for n, r in records.items()}) + "\n")
    return list(state.started)


def apply_stop_libvirt_daemons(layout: Layout, timeout: float = 15.0) -> list[str]:
    """Stop the libvirt daemons this installation started (newest first; a daemon whose pid now
    belongs to another command line is left alone). Returns the names stopped."""
    stopped = []
    for name, record in reversed(list(_read_daemon_records(layout).items())):
        if not is_our_process(record):
            continue
        send_signal(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.append(name)
    _daemons_record(layout).unlink(missing_ok=True)
    return stopped


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
