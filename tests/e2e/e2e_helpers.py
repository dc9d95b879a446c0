"""What the real-guest end-to-end tests share: the QEMU/root guard, virtctl as a process, polling,
finding a domain's QEMU processes, and the NATS permissions violations in an installation's logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("libvirtd") is None or os.geteuid() != 0,
    reason="needs root, QEMU and libvirtd (scripts/install.sh installs them)")


def virtctl(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m services.virtctl.main ARGS`` from the checkout; AssertionError on failure when ``check``."""
    proc = subprocess.run([sys.executable, "-m", "services.virtctl.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"virtctl {' '.join(args)} -> {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """The first truthy value of ``predicate()`` within ``timeout`` s; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def qemu_pids(domain: str) -> list[int]:
    """Live QEMU processes of libvirt domain ``domain`` (``-name guest=<domain>,...``), any daemon."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(f"guest={domain},".encode()) or a == f"guest={domain}".encode() for a in args):
                pids.append(int(entry.name))
    return pids


#: A refusal of the installation's NATS users: nats-server logs ``Publish Violation`` /
#: ``Subscription Violation``, a client is told ``Permissions Violation for Publish to "..."``
#: (shared.bus), a store write it may not publish ends ``Forbidden`` (shared.store.kv).
_VIOLATION = re.compile(r"permissions? violation|publish violation|subscription violation|NATS refused", re.I)


def permission_violations(state: Path) -> list[str]:
    """Lines of the ``*.log`` files under installation state directory ``state`` (services,
    nats-server, extra nodes) that report a NATS permissions violation, each as
    ``<file relative to state>: <line>``; [] when there is none. A secured installation's flows
    must need nothing their roles are not given (shared.nats_auth)."""
    found = []
    for path in sorted(state.rglob("*.log")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found += [f"{path.relative_to(state)}: {line.strip()}" for line in text.splitlines() if _VIOLATION.search(line)]
    return found


def apply_keep_logs(state: Path) -> None:
    """Copy the ``*.log`` files under ``state`` to ``$KUBEVIRT_PY_E2E_KEEP_LOGS/<state's name>/``
    when that variable is set (the fixtures wipe the state directory; this keeps what to read)."""
    keep = os.environ.get("KUBEVIRT_PY_E2E_KEEP_LOGS")
    if not keep:
        return
    for path in state.rglob("*.log"):
        target = Path(keep) / state.name / path.relative_to(state)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
