"""Keep the system libvirt daemons running on a machine without systemd.

Owns: starting ``virtlogd -d`` and ``libvirtd -d`` (the monolithic QEMU driver
daemon of libvirt 9.0 on Debian 12) as root when they are not already running,
waiting until ``qemu:///system`` answers, and remembering which daemons this
process started so that only those are stopped again.

Also: per-node daemons for simulated nodes (:func:`apply_node_daemons`), each in a
private mount + UTS namespace with its own state and host UUID.
Deliberately elsewhere: talking to libvirt (``services.virt_handler.hypervisor``).

Facts (../shared/docs/feasibility-on-this-machine.md): no systemd, so nothing
socket-activates the daemons; ``libvirtd`` needs ``virtlogd`` for serial
``<log file=...>`` and console logging; the daemon starts in about 1 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
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


def wait_for(predicate: Callable[[], object], what: str, timeout: float) -> None:
    """Poll ``predicate`` every 50 ms until true; raises :class:`LibvirtdError` naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise LibvirtdError(f"{what} not ready after {timeout:.0f} s")


def compute_migration_uri(libvirt_uri: str, system_libvirtd_pid: int | None) -> str:
    """The URI by which another node's libvirtd reaches the daemon at ``libvirt_uri`` for a
    peer-to-peer migration (the Node annotation ``kubevirt-py.io/libvirt-migration-uri``).

    Node daemons run in mount namespaces of their own, where ``/run/libvirt`` is theirs, so
    ``qemu:///system`` means the system daemon only in the root namespace: it becomes the socket
    reached through the system daemon's own root,
    ``qemu+unix:///system?socket=/proc/<pid>/root/run/libvirt/libvirt-sock`` (feasibility notes
    §1; unchanged when the pid is unknown). Any other URI (a node daemon's socket URI, whose path
    every namespace shares, or ``test://``) is returned as it is."""
    if libvirt_uri in ("qemu:///system", "qemu+unix:///system") and system_libvirtd_pid is not None:
        return f"qemu+unix:///system?socket=/proc/{system_libvirtd_pid}/root{SYSTEM_SOCKET}"
    return libvirt_uri


def find_system_libvirtd() -> int | None:
    """The pid of the system ``libvirtd`` of this mount namespace, None when it does not run."""
    return _find_running("libvirtd")


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
            wait_for(lambda: _find_running(name) is not None, name, timeout)
            pid = _find_running(name)
        state.pids[name] = pid  # type: ignore[assignment]
    wait_for(SYSTEM_SOCKET.exists, f"libvirtd socket {SYSTEM_SOCKET}", timeout)
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
        wait_for(lambda: not is_pid_alive(pid), f"{name} (pid {pid}) exit", timeout)
    state.started.clear()


# --- simulated nodes: one privileged libvirtd per node, in its own mount + UTS namespace ------------
LIBVIRT_DIRS = {  # namespace path -> directory name under the node's base dir
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/cache/libvirt": "cache",
    "/var/log/libvirt": "log",
}


@dataclass
class NodeDaemons:
    """A simulated node's ``virtlogd`` + ``libvirtd`` (see :func:`apply_node_daemons`).

    ``uri`` reaches its QEMU driver from the root namespace; ``host_uuid`` is what libvirt
    reports as the host UUID (migration refuses equal UUIDs on both ends).
    """

    name: str
    base: Path
    host_uuid: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"


def _copy_dir_skeleton(source: Path, target: Path) -> None:
    """Recreate ``source``'s directories (owner and mode kept) under ``target``, without files."""
    for path in [source, *sorted(p for p in source.rglob("*") if p.is_dir() and not p.is_symlink())]:
        dest = target / path.relative_to(source)
        dest.mkdir(parents=True, exist_ok=True)
        st = path.stat()
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o7777)


def compute_node_config(libvirtd_conf: str, host_uuid: str) -> str:
    """``libvirtd.conf`` text with ``host_uuid`` set (replacing any earlier setting)."""
    lines = [line for line in libvirtd_conf.splitlines() if not line.strip().startswith("host_uuid")]
    return "\n".join([*lines, f'host_uuid = "{host_uuid}"', ""])


SYSTEM_MIGRATION_PORTS = (49152, 49215)
"""libvirt's default ``migration_port_min``/``max`` (qemu.conf), used by the system daemon."""
NODE_MIGRATION_PORT_BLOCKS = 15
"""Blocks of 64 ports above the system daemon's range that node daemons choose from."""


def compute_node_migration_ports(host_uuid: str) -> tuple[int, int]:
    """The incoming-migration port range (first, last) of a node daemon: a block of 64 ports
    above libvirt's default range, chosen by the host UUID. Daemons on one machine share the
    network namespace; with the same range, two of them could hand the same free port to two
    incoming QEMUs at once ("Failed to find an available port: Address already in use")."""
    block = int(host_uuid.replace("-", "")[:8], 16) % NODE_MIGRATION_PORT_BLOCKS
    first = SYSTEM_MIGRATION_PORTS[1] + 1 + 64 * block
    return first, first + 63


def compute_node_qemu_config(qemu_conf: str, ports: tuple[int, int]) -> str:
    """``qemu.conf`` text with ``migration_port_min``/``migration_port_max`` set to ``ports``."""
    lines = [line for line in qemu_conf.splitlines()
             if not line.strip().startswith(("migration_port_min", "migration_port_max"))]
    return "\n".join([*lines, f"migration_port_min = {ports[0]}", f"migration_port_max = {ports[1]}", ""])


def apply_node_daemons(base: Path, name: str, host_uuid: str, timeout: float = 20.0, *,
                       launch_prefix: Sequence[str] = ()) -> NodeDaemons:
    """Start a simulated node's ``virtlogd`` and ``libvirtd`` (facts: feasibility notes §1).

    The daemons run in a private mount + UTS namespace (hostname ``name``) where per-node
    directories under ``base`` are bind-mounted over libvirt's config, runtime, state, cache
    and log directories. The config is a copy of ``/etc/libvirt`` without domain and network
    definitions, with ``host_uuid`` set and a migration port range of its own
    (:func:`compute_node_migration_ports`). ``launch_prefix`` is put before the start command,
    e.g. ``shared.netns.netns_argv(host, [])`` so that the daemons (and the guests they start)
    live in a host's network namespace. Idempotent: when the node's daemons already run, they
    are returned as they are. Raises :class:`LibvirtdError` when they do not come up.
    """
    base = Path(base)
    node = NodeDaemons(name=name, base=base, host_uuid=host_uuid)
    pid_files = {"virtlogd": base / "virtlogd.pid", "libvirtd": base / "libvirtd.pid"}
    running = {n: _read_pid(p) for n, p in pid_files.items()}
    if all(running.values()) and node.socket.exists():
        node.pids = running  # type: ignore[assignment]
        return node
    for daemon, pid in running.items():
        if pid:  # half-running node: start over
            os.kill(pid, 15)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    etc = base / "etc"
    if not etc.exists():
        shutil.copytree("/etc/libvirt", etc, symlinks=True,
                        ignore=lambda d, names: names if Path(d) == Path("/etc/libvirt/qemu") else [])
    conf = etc / "libvirtd.conf"
    conf.write_text(compute_node_config(conf.read_text() if conf.exists() else "", host_uuid))
    qemu_conf = etc / "qemu.conf"
    qemu_conf.write_text(compute_node_qemu_config(qemu_conf.read_text() if qemu_conf.exists() else "",
                                                  compute_node_migration_ports(host_uuid)))
    _copy_dir_skeleton(Path("/var/lib/libvirt"), base / "lib")
    for sub in ("run", "cache", "log"):
        (base / sub).mkdir(exist_ok=True)
    mounts = "; ".join(f"mount --bind {base / sub} {target}" for target, sub in LIBVIRT_DIRS.items())
    script = (f"set -e; hostname {name}; mkdir -p /run/libvirt /var/cache/libvirt /var/log/libvirt; {mounts}; "
              f"virtlogd -d --pid-file {pid_files['virtlogd']}; libvirtd -d --pid-file {pid_files['libvirtd']}")
    result = subprocess.run([*launch_prefix, "unshare", "--mount", "--uts", "--propagation", "private",
                             "sh", "-c", script],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise LibvirtdError(f"node {name}: daemons did not start: {result.stderr.strip()}")
    wait_for(lambda: all(_read_pid(p) for p in pid_files.values()) and node.socket.exists(),
              f"node {name} libvirtd socket {node.socket}", timeout)
    node.pids = {n: _read_pid(p) for n, p in pid_files.items()}  # type: ignore[misc]
    return node


def apply_stop_node(node: NodeDaemons, timeout: float = 15.0) -> None:
    """Stop a simulated node's daemons (libvirtd first, SIGTERM). Guests keep running (QEMU
    outlives libvirtd, as on a real host): destroy them first when the node is to go away."""
    for daemon in ("libvirtd", "virtlogd"):
        pid = _read_pid(node.base / f"{daemon}.pid")
        if pid is None:
            continue
        os.kill(pid, 15)
        wait_for(lambda: not is_pid_alive(pid), f"node {node.name} {daemon} (pid {pid}) exit", timeout)
