"""The acceleration probe's firmware really exits through the debug port under TCG, and the
probe's answer is cached per process."""

from __future__ import annotations

import shutil

import pytest

from services.virt_handler import kvm_probe


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU not installed")
def test_probe_firmware_reaches_protected_mode_and_exits_under_tcg():
    assert kvm_probe._run_probe("tcg", timeout=10) is True


def test_result_is_cached(monkeypatch):
    monkeypatch.setattr(kvm_probe, "_cached", {"kvm": False})
    monkeypatch.setattr(kvm_probe, "_run_probe", lambda *a: pytest.fail("probed again"))
    assert kvm_probe.compute_domain_type() == "qemu"
    monkeypatch.setattr(kvm_probe, "_cached", {"kvm": True})
    assert kvm_probe.compute_domain_type() == "kvm"


def test_firmware_is_64_kib_with_a_reset_vector_jump():
    image = kvm_probe.compute_probe_firmware()
    assert len(image) == 0x10000 and image[0xFFF0] == 0xEA
