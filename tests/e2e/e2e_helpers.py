"""What the real-guest end-to-end tests share: the QEMU/root guard, virtctl as a process, polling,
and finding a domain's QEMU processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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
