"""The machine's system libvirt daemons shared by several users: test runs and embedded
installations on one machine each register, and only the last one to leave stops what users
started (see :func:`apply_shared_system_daemons`). Daemons that ran before any user came are
never stopped."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from shared.libvirtd import DaemonState, apply_system_daemons, is_pid_alive, wait_for

SHARED_USERS_DIR = Path("/run/kubevirt-py/system-daemon-users")
"""Where processes sharing the test-started system daemons register (one file per user pid)."""


def apply_shared_system_daemons(timeout: float = 15.0, users_dir: Path | None = None, *,
                                holder: str | None = None, holder_while: Path | None = None) -> DaemonState:
    """:func:`apply_system_daemons` for users that share the machine's system daemons (test runs,
    embedded installations): registers a user, and records the daemons it had to start as started
    *by the users*, so that the last user to leave stops them
    (:func:`apply_leave_shared_system_daemons`) and nobody stops a daemon another user still needs.
    Daemons that ran before any user came are never stopped.

    ``holder`` None registers this process (a user while its pid lives); a name (``[a-z0-9-]+``,
    e.g. an installation's) registers a user that stays until it leaves by that name, or until
    the file ``holder_while`` (when given) no longer exists, e.g. an installation removed without
    ``down``. ``users_dir`` defaults to :data:`SHARED_USERS_DIR`. Idempotent per user.
    Raises :class:`LibvirtdError`."""
    users_dir = users_dir or SHARED_USERS_DIR
    with _users_lock(users_dir):
        state = apply_system_daemons(timeout)
        started_record = users_dir / "started.json"
        started = _read_json(started_record)
        for name in state.started:
            started[name] = state.pids[name]
        if started:
            started_record.write_text(json.dumps(started))
        (users_dir / f"user-{holder or os.getpid()}").write_text(str(holder_while or ""))
    return state


def apply_leave_shared_system_daemons(timeout: float = 15.0, users_dir: Path | None = None, *,
                                      holder: str | None = None) -> list[str]:
    """Unregister a user (this process, or ``holder``); when no registered user remains (a process
    user counts while its pid lives), stop the daemons the users started (newest first, each only
    while its pid still runs that daemon). Returns the names stopped (empty while others remain)."""
    users_dir = users_dir or SHARED_USERS_DIR
    with _users_lock(users_dir):
        (users_dir / f"user-{holder or os.getpid()}").unlink(missing_ok=True)
        alive = False
        for record in users_dir.glob("user-*"):
            if _is_user_present(record):
                alive = True
            else:
                record.unlink(missing_ok=True)  # a user that went away without leaving
        if alive:
            return []
        started_record = users_dir / "started.json"
        stopped = []
        for name, pid in reversed(list(_read_json(started_record).items())):
            if _runs(pid, name):
                os.kill(pid, 15)
                wait_for(lambda: not is_pid_alive(pid), f"{name} (pid {pid}) exit", timeout)
                stopped.append(name)
        started_record.unlink(missing_ok=True)
        return stopped


def _is_user_present(record: Path) -> bool:
    """A process user while its pid lives; a named user while its ``holder_while`` file exists."""
    user = record.name.removeprefix("user-")
    if user.isdigit():
        return is_pid_alive(int(user))
    try:
        while_path = record.read_text().strip()
    except OSError:
        return False
    return not while_path or Path(while_path).exists()


@contextlib.contextmanager
def _users_lock(users_dir: Path) -> Iterator[None]:
    users_dir.mkdir(parents=True, exist_ok=True)
    with open(users_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _runs(pid: int, name: str) -> bool:
    """Whether ``pid`` is alive and its command is ``name`` (not a reused pid)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(argv0).name == name
