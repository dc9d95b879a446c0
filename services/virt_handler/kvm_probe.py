"""Does hardware acceleration really work on this node? Decides ``kvm`` versus ``qemu`` (TCG).

Owns: :func:`is_kvm_usable` and :func:`compute_domain_type`. ``/dev/kvm`` existing is not
enough: on this kind of machine (nested virtualisation without working KVM) a guest under
KVM runs real-mode code but hangs as soon as it enters protected mode, so a kernel never
prints a line. The probe boots QEMU with ``-accel kvm`` on a 64 KiB firmware image that
switches to 32-bit protected mode and then writes to an ``isa-debug-exit`` port, which
makes QEMU exit with status 1. Anything else within the timeout -> no KVM, and guests run
under TCG (``<domain type='qemu'>``), as KubeVirt does with ``useEmulation``.
The answer is cached per process and, for the whole machine, per boot in
``/run/kubevirt-py/kvm-probe`` (keyed by the kernel's boot id, guarded by a file lock): a
probe whose vCPU hangs inside KVM can take a long time to die after SIGKILL and burns CPU
meanwhile, so the machine should pay for it at most once per boot, not once per handler.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")
MACHINE_CACHE = Path("/run/kubevirt-py/kvm-probe")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PROBE_TIMEOUT = 3.0
DEBUG_EXIT_PORT = 0xF4
EXPECTED_EXIT = 1  # isa-debug-exit: status = (value << 1) | 1 with value 0

_cached: dict[str, bool] = {}


def compute_probe_firmware() -> bytes:
    """A 64 KiB BIOS image: at the reset vector jump to F000:0000, load a flat GDT, set CR0.PE,
    far-jump into 32-bit code that writes 0 to the debug-exit port and halts."""
    image = bytearray(b"\xf4" * 0x10000)  # hlt everywhere
    base, gdt, gdtr, pm32 = 0xF0000, 0x100, 0x120, 0x40
    real_mode = (
        b"\xfa"                                           # cli
        + b"\x2e\x0f\x01\x16" + struct.pack("<H", gdtr)   # lgdt cs:[gdtr]
        + b"\x0f\x20\xc0"                                 # mov eax, cr0
        + b"\x0c\x01"                                     # or al, 1
        + b"\x0f\x22\xc0"                                 # mov cr0, eax
        + b"\x66\xea" + struct.pack("<I", base + pm32) + b"\x08\x00"  # jmp dword 0x08:pm32
    )
    protected_mode = (
        b"\x66\xb8\x10\x00"                   # mov ax, 0x10
        b"\x8e\xd8"                           # mov ds, ax
        b"\xb0\x00"                           # mov al, 0
        + bytes([0xE6, DEBUG_EXIT_PORT])      # out 0xf4, al
        + b"\xf4"                             # hlt
    )
    image[0:len(real_mode)] = real_mode
    image[pm32:pm32 + len(protected_mode)] = protected_mode
    image[gdt:gdt + 24] = bytes(8) + bytes.fromhex("ffff0000009acf00") + bytes.fromhex("ffff00000092cf00")
    image[gdtr:gdtr + 6] = struct.pack("<HI", 23, base + gdt)
    image[0xFFF0:0xFFF5] = b"\xea\x00\x00\x00\xf0"     # jmp 0xf000:0x0000
    return bytes(image)


def _run_probe(accel: str, timeout: float) -> bool:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        firmware = Path(tmp) / "probe.bin"
        firmware.write_bytes(compute_probe_firmware())
        proc = subprocess.Popen(
            [qemu, "-accel", accel, "-machine", "pc", "-nodefaults", "-display", "none", "-no-reboot",
             "-bios", str(firmware), "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return proc.wait(timeout=timeout) == EXPECTED_EXIT
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=2.0)  # a vCPU stuck in the kernel may not die at once; do not hang on it
            except subprocess.TimeoutExpired:
                pass
            return False


def is_kvm_usable(timeout: float = PROBE_TIMEOUT, *, refresh: bool = False) -> bool:
    """True when ``/dev/kvm`` is read/writable and a KVM guest gets through protected-mode entry
    within ``timeout`` seconds. Cached per process (``refresh=True`` probes again)."""
    if "kvm" in _cached and not refresh:
        return _cached["kvm"]
    if not (KVM_DEVICE.exists() and os.access(KVM_DEVICE, os.R_OK | os.W_OK)):
        _cached["kvm"] = False
        return False
    usable = _probe_once_per_boot(timeout, refresh=refresh)
    _cached["kvm"] = usable
    return usable


def _probe_once_per_boot(timeout: float, *, refresh: bool, cache: Path | None = None) -> bool:
    """Run the KVM probe unless this boot already has an answer in ``cache``; concurrent callers
    wait on a file lock so only one of them probes. Falls back to probing when /run is not
    writable."""
    cache = cache or MACHINE_CACHE
    boot_id = BOOT_ID.read_text().strip() if BOOT_ID.exists() else ""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        lock = open(cache.with_suffix(".lock"), "a")
    except OSError:
        return _run_probe("kvm", timeout)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not refresh:
            try:
                saved = json.loads(cache.read_text())
                if saved.get("bootId") == boot_id:
                    return bool(saved["kvm"])
            except (OSError, ValueError, KeyError):
                pass
        usable = _run_probe("kvm", timeout)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bootId": boot_id, "kvm": usable}))
        tmp.replace(cache)
        return usable


def compute_domain_type(timeout: float = PROBE_TIMEOUT) -> str:
    """``"kvm"`` when :func:`is_kvm_usable`, else ``"qemu"`` (TCG software emulation)."""
    return "kvm" if is_kvm_usable(timeout) else "qemu"
