"""Keep the system libvirt daemons running on a machine without systemd.

Owns: starting ``virtlogd -d`` and ``libvirtd -d`` (the monolithic QEMU driver
daemon of libvirt 9.0 on Debian 12) as root when they are not already running,
waiting until ``qemu:///system`` answers, and remembering which daemons this
process started so that only those are stopped again.

Deliberately elsewhere: talking to libvirt (``services.virt_handler.hypervisor``)
and per-node daemons in private namespaces for multi-node setups (later).

Facts (../shared/docs/feasibility-on-this-machine.md): no systemd, so nothing
socket-activates the daemons; ``libvirtd`` needs ``virtlogd`` for serial
``<log file=...>`` and console logging; the daemon starts in about 1 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
"""The read-write socket of the system daemon (``qemu:///system``)."""

PID_FILES = {
    "virtlogd": Path("/run/virtlogd.pid"),
    "libvirtd": Path("/run/libvirtd.pid"),
}


KVM_DEVICE = Path("/dev/kvm")


class LibvirtdError(RuntimeError):
    """A daemon could not be started or did not become ready; the message says which and why."""


@dataclass
class DaemonState:
    """What :func:`apply_system_daemons` found and did.

    ``started`` lists the daemons ("virtlogd", "libvirtd") this call started; the
    others were already running and belong to someone else.
    """

    started: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)


def is_pid_alive(pid: int) -> bool:
    """True when a process with this id exists (signal 0 probe)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_pid_alive(pid) else None


def _find_running(name: str) -> int | None:
    """The pid of a running daemon called ``name`` (pid file first, then /proc)."""
    pid = _read_pid(PID_FILES[name])
    if pid is not None:
        return pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            # a daemon in another mount namespace (a simulated node) is not ours to reuse
            if comm == name and os.readlink(entry / "ns" / "mnt") == os.readlink("/proc/self/ns/mnt"):
                return int(entry.name)
        except OSError:
            continue
    return None


def is_daemon_running(name: str) -> bool:
    """True when the system ``virtlogd`` or ``libvirtd`` (in our mount namespace) runs."""
    return _find_running(name) is not None


def _start(name: str) -> None:
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(binary).exists():
        raise LibvirtdError(f"{name} is not installed (scripts/apt-packages.txt lists libvirt-daemon-system)")
    result = subprocess.run([binary, "-d"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise LibvirtdError(f"{name} -d failed (exit {result.returncode}): {result.stderr.strip()}")


def _wait_for(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise LibvirtdError(f"{what} not ready after {timeout:.0f} s")


def apply_kvm_device_access(device: Path = KVM_DEVICE) -> bool:
    """Give ``/dev/kvm`` the owner and mode Debian's udev rules set (group ``kvm``, 0660).

    Without udev the node here is root-only. libvirt then sees KVM in the capabilities it
    probed as root but not usable by the ``libvirt-qemu`` user, declares its capability cache
    outdated on *every* lookup ("KVM was enabled when probing ..., but it is not available
    now") and re-probes QEMU (about 4 s) many times per domain start: a start took ~100 s.
    Guests still run under TCG (``type='qemu'``); this only keeps libvirt's cache valid.
    Returns True when the node was changed. No-op without the device or the ``kvm`` group.
    """
    import grp

    try:
        st = device.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (FileNotFoundError, KeyError):
        return False
    if st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060:
        return False
    os.chown(device, -1, kvm_gid)
    os.chmod(device, 0o660)
    return True


def apply_system_daemons(timeout: float = 15.0) -> DaemonState:
    """Make sure ``virtlogd`` and ``libvirtd`` run; start the missing ones with ``-d``.

    Returns which daemons were started here (pass the state to :func:`apply_stop`
    to undo exactly that). Raises :class:`LibvirtdError` when a daemon is not
    installed, refuses to start, or its socket does not appear within ``timeout`` s.
    Must run as root (the system daemon manages /run/libvirt). Also fixes ``/dev/kvm``
    access first (:func:`apply_kvm_device_access`).
    """
    state = DaemonState()
    apply_kvm_device_access()
    for name in ("virtlogd", "libvirtd"):
        pid = _find_running(name)
        if pid is None:
            _start(name)
            state.started.append(name)
            _wait_for(lambda n=name: _find_running(n) is not None, name, timeout)
            pid = _find_running(name)
        state.pids[name] = pid  # type: ignore[assignment]
    _wait_for(SYSTEM_SOCKET.exists, f"libvirtd socket {SYSTEM_SOCKET}", timeout)
    return state


def apply_stop(state: DaemonState, timeout: float = 15.0) -> None:
    """Stop the daemons that :func:`apply_system_daemons` started (SIGTERM by pid), newest first.

    Daemons that were already running are left alone.
    """
    for name in reversed(state.started):
        pid = state.pids.get(name)
        if pid is None or not is_pid_alive(pid):
            continue
        os.kill(pid, 15)
        _wait_for(lambda p=pid: not is_pid_alive(p), f"{name} (pid {pid}) exit", timeout)
    state.started.clear()
