"""The processes of an embedded installation: start detached, wait healthy, stop only our own.

Owns :class:`ServiceSpec` (one process: command line, health probe, preparation),
:class:`ProcessRecord` (``run/<service>.json``: pid + exact command line), starting a service as a
detached process (own session, output appended to ``logs/<service>.log``), waiting for its health
check, and stopping a process only when its pid record and its live command line match (a
recycled pid of an unrelated process is never signalled). :func:`compute_log_failure` says in one
line why a service failed, from its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.virtctl.layout import Layout


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the installation.

    ``argv(layout)`` is its command line; ``health(layout)`` one quick probe (True = healthy);
    ``prepare(layout)`` runs before a start (write configs, make dirs). ``start_timeout`` seconds
    to become healthy. ``wrap(argv)`` is the command line actually run, for a launcher that
    executes ``argv`` in place (same pid, e.g. ``shared.netns.netns_argv``: ``ip netns exec``
    ends in ``execvp``), so the record and the live command line are still ``argv``.
    """

    name: str
    argv: Callable[[Layout], list[str]]
    health: Callable[[Layout], bool]
    prepare: Callable[[Layout], None] | None = None
    start_timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    wrap: Callable[[list[str]], list[str]] | None = None


def stays_up(layout: Layout) -> bool:
    """Placeholder probe for services without a health endpoint: their pid is alive (checked by
    the caller); the start wait adds a short grace period before calling it healthy."""
    return True


@dataclass(frozen=True)
class ProcessRecord:
    """What ``run/<service>.json`` holds: the pid and the exact argv it was started with."""

    pid: int
    argv: list[str]


def _record_path(layout: Layout, name: str) -> Path:
    return layout.run_dir / f"{name}.json"


def read_record(layout: Layout, name: str) -> ProcessRecord | None:
    path = _record_path(layout, name)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(int(data["pid"]), list(data["argv"]))
    except (ValueError, KeyError, TypeError):
        return None


def is_our_process(record: ProcessRecord, attempts: int = 3) -> bool:
    """True when ``record.pid`` is alive and its command line is exactly ``record.argv``
    (so a recycled pid of an unrelated process is never touched). Right after exec the kernel
    may briefly show an empty or stale command line, hence a few reads 20 ms apart."""
    wanted = [a.encode() for a in record.argv]
    for attempt in range(attempts):
        try:
            raw = Path(f"/proc/{record.pid}/cmdline").read_bytes()
        except OSError:
            return False
        if raw.rstrip(b"\0").split(b"\0") == wanted:
            return True
        if attempt + 1 < attempts:
            time.sleep(0.02)
    return False


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return not _is_zombie(pid)


def running_record(layout: Layout, spec: ServiceSpec) -> ProcessRecord | None:
    """The record of ``spec``'s process when that very process is running, else None."""
    record = read_record(layout, spec.name)
    return record if record is not None and is_our_process(record) else None


def log_path(layout: Layout, name: str) -> Path:
    return layout.logs_dir / f"{name}.log"


def launch(layout: Layout, spec: ServiceSpec) -> ProcessRecord:
    """Start ``spec`` detached (new session, stdin closed, output appended to its log; through
    ``spec.wrap`` when set) and record it."""
    if spec.prepare is not None:
        spec.prepare(layout)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    argv = spec.argv(layout)
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    with open(log_path(layout, spec.name), "ab") as log:
        command = spec.wrap(argv) if spec.wrap else argv
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(layout.state_dir))
    record = ProcessRecord(proc.pid, argv)
    _record_path(layout, spec.name).write_text(json.dumps(asdict(record)) + "\n")
    proc.returncode = 0  # detached on purpose: keep Popen's destructor from warning about it
    return record


def wait_healthy(layout: Layout, spec: ServiceSpec, record: ProcessRecord, timeout: float | None = None) -> None:
    """Poll ``spec.health`` until it passes. Raises RuntimeError quoting the log's error when the
    process exits or stays unhealthy for ``timeout`` (default ``spec.start_timeout``) seconds."""
    limit = spec.start_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    grace_until = time.monotonic() + (1.0 if spec.health is stays_up else 0.0)
    while True:
        if not is_alive(record.pid):  # just launched by us: the pid is ours, no cmdline check needed
            failure = compute_log_failure(log_path(layout, spec.name))
            raise RuntimeError(f"{spec.name} exited during start-up: {failure}")
        if time.monotonic() >= grace_until and spec.health(layout):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.name} not healthy after {limit:.0f}s: "
                               f"{compute_log_failure(log_path(layout, spec.name))}")
        time.sleep(0.1)


def stop(layout: Layout, spec: ServiceSpec, timeout: float = 15.0, *, kill: bool = False) -> bool:
    """Stop ``spec``'s process if (and only if) it is the one this installation started:
    SIGTERM, then SIGKILL after ``timeout`` s (``kill=True``: SIGKILL at once, as ``kill -9``).
    Removes the record. Returns True when a process was stopped."""
    record = read_record(layout, spec.name)
    stopped = False
    if record is not None and is_our_process(record):
        send_signal(record.pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(record.pid) and is_our_process(record):  # re-check: never kill a recycled pid
            send_signal(record.pid, signal.SIGKILL)
            while is_alive(record.pid):
                time.sleep(0.05)
        stopped = True
    _record_path(layout, spec.name).unlink(missing_ok=True)
    return stopped


def compute_log_failure(path: Path, lines: int = 50) -> str:
    """Why a service failed, in one line, from the end of its log: the last error record of a
    JSON-lines log (``msg`` plus the exception's last line), else the last line of a traceback
    (``OSError: [Errno 98] ...``), else the last line; then ``(log: <path>)`` to read more."""
    if not path.exists():
        return f"(no log at {path})"
    text = [line for line in path.read_text(errors="replace").splitlines()[-lines:] if line.strip()]
    return f"{_failure_line(text) or '(empty log)'} (log: {path})"


def _failure_line(lines: list[str]) -> str:
    plain = ""
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            plain = plain or line.strip()  # the newest non-JSON line: a traceback's last line
            continue
        if plain:
            return plain
        if str(record.get("level", "")).lower() in ("error", "critical"):
            exc = str(record.get("exc") or "").strip().splitlines()
            return f"{record.get('msg', '')}: {exc[-1]}" if exc else str(record.get("msg", ""))
    return plain or (lines[-1].strip() if lines else "")


def send_signal(pid: int, sig: int) -> None:
    """``kill(pid, sig)``; a process already gone is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
